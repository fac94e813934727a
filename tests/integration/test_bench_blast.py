"""waxseal-bench blast against Postfix's smtp-sink on loopback.

Checks the report's structure and counts, never its speed, and that blast
refuses to start without a limit or against a non-loopback target. The
--size-dist and --messages-dir tests send to a waxseal daemon (the relay
fixture) and read what its spool holds.

Environment: WAXSEAL_BIN is <build>/relay/waxseal; the bench is
<build>/bench/waxseal-bench (WAXSEAL_BENCH overrides). WAXSEAL_SOURCE is
the source tree.
"""
import json
import os
import socket
import subprocess
import time

import pytest

import waxtest

SMTP_SINK = "/usr/sbin/smtp-sink"


def bench_path():
    """The waxseal-bench binary, found beside the daemon's build."""
    if os.environ.get("WAXSEAL_BENCH"):
        return os.environ["WAXSEAL_BENCH"]
    if os.environ.get("WAXSEAL_BIN"):
        build = os.path.dirname(os.path.dirname(os.environ["WAXSEAL_BIN"]))
        return os.path.join(build, "bench", "waxseal-bench")
    src = os.environ.get("WAXSEAL_SOURCE",
                         os.path.join(os.path.dirname(__file__), "..", ".."))
    return os.path.join(src, "build", "bench", "waxseal-bench")


BENCH = bench_path()

needs_bench = pytest.mark.skipif(
    not os.access(BENCH, os.X_OK),
    reason=f"waxseal-bench not built at {BENCH}")
needs_sink = pytest.mark.skipif(
    not os.access(SMTP_SINK, os.X_OK),
    reason=f"{SMTP_SINK} is absent (Debian package postfix)")


def free_port():
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sink(*args):
    """Start smtp-sink on a free loopback port; returns (proc, port)."""
    port = free_port()
    cmd = [SMTP_SINK]
    if os.geteuid() == 0:
        # smtp-sink drops privileges and insists on being told to whom.
        cmd += ["-u", "nobody"]
    cmd += list(args) + [f"127.0.0.1:{port}", "100"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace")
            pytest.fail(f"smtp-sink exited: {err}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    pytest.fail("smtp-sink did not start listening")


@pytest.fixture
def sink():
    proc, port = start_sink()
    yield port
    proc.terminate()
    proc.wait(10)


def blast(*args, timeout=120):
    r = subprocess.run([BENCH, "blast"] + list(args),
                       capture_output=True, text=True, timeout=timeout)
    # A sanitizer build reports on stderr; that is a failure too.
    assert not waxtest.sanitizer_problems(r.stderr), r.stderr
    return r


@needs_bench
@needs_sink
@pytest.mark.parametrize("mode", ["--pipelining", "--pipelining=full",
                                  "--no-pipelining"])
def test_blast_500_messages(sink, mode):
    r = blast("--target", f"127.0.0.1:{sink}", "--messages", "500",
              "--connections", "10", "--duration", "60", mode, "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)

    for key in ("target", "connections", "pipelining", "message_bytes",
                "messages", "replies", "errors", "elapsed_s",
                "accepted_per_s", "latency_ms"):
        assert key in rep, key
    assert rep["connections"] == 10
    m = rep["messages"]
    assert m["attempted"] == 500
    assert m["accepted"] == 500
    assert m["deferred"] == m["rejected"] == m["failed"] == 0
    assert rep["replies"] == {"2xx": 500, "4xx": 0, "5xx": 0}
    assert rep["errors"]["connect_failures"] == 0
    assert rep["errors"]["connects"] == 10
    assert rep["elapsed_s"] > 0 and rep["accepted_per_s"] > 0

    lat = rep["latency_ms"]
    assert lat["count"] == 500
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]


@needs_bench
@needs_sink
def test_blast_counts_rejections():
    proc, port = start_sink("-f", "RCPT")
    try:
        r = blast("--target", f"127.0.0.1:{port}", "--messages", "100",
                  "--connections", "4", "--duration", "60", "--json")
    finally:
        proc.terminate()
        proc.wait(10)
    rep = json.loads(r.stdout)
    assert r.returncode == 1
    assert rep["messages"]["attempted"] == 100
    assert rep["messages"]["accepted"] == 0
    assert rep["replies"] == {"2xx": 0, "4xx": 0, "5xx": 100}


@needs_bench
def test_blast_refuses_without_limits():
    r = blast("--target", f"127.0.0.1:{free_port()}", timeout=10)
    assert r.returncode == 2
    assert "limit" in r.stderr
    assert r.stdout == ""


@needs_bench
@pytest.mark.parametrize("target", ["192.0.2.1:25", "[2001:db8::1]:25"])
def test_blast_refuses_non_loopback(target):
    r = blast("--target", target, "--messages", "1", timeout=10)
    assert r.returncode == 2
    assert "loopback" in r.stderr
    assert r.stdout == ""


@needs_bench
def test_help():
    r = subprocess.run([BENCH, "--help"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0 and "blast" in r.stdout
    r = blast("--help", timeout=10)
    assert r.returncode == 0 and "--messages" in r.stdout


def relay_blast(r, *args, timeout=60):
    """Blast at the relay r; the report as a dict (the run must pass)."""
    p = blast("--target", f"127.0.0.1:{r.port}", "--duration", "30",
              "--json", *args, timeout=timeout)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@needs_bench
def test_blast_size_dist(relay):
    r = relay()
    args = ("--messages", "40", "--connections", "4",
            "--size-dist", "2048:50,20480:50", "--seed", "7")
    rep = relay_blast(r, *args)
    assert rep["messages"]["accepted"] == 40
    assert 2048 < rep["mean_message_bytes"] < 20480
    assert rep["bytes_sent"] == round(rep["mean_message_bytes"] * 40)

    # The spool holds both sizes (plus the headers waxseal adds).
    sizes = [m["size"] for m in r.queue_list()]
    assert len(sizes) == 40
    assert any(1900 < s < 4000 for s in sizes), sizes
    assert any(19000 < s < 23000 for s in sizes), sizes
    assert all(s < 4000 or s > 19000 for s in sizes), sizes

    # The same seed draws the same sizes.
    again = relay_blast(r, *args)
    assert again["bytes_sent"] == rep["bytes_sent"]


@needs_bench
@pytest.mark.parametrize("spec", ["", "2048", "2048:", "2048:1,",
                                  "0:1", "2048:0", "x:1"])
def test_blast_size_dist_bad(spec):
    r = blast("--target", f"127.0.0.1:{free_port()}", "--messages", "1",
              "--size-dist", spec, timeout=10)
    assert r.returncode == 2
    assert "--size-dist" in r.stderr


SAMPLE_LF = (b"From: news@sender.test\n"
             b"To: someone@example.test\n"
             b"Subject: unix line ends\n"
             b"\n"
             b"one\n"
             b"two\n")
SAMPLE_DOT = (b"From: news@sender.test\r\n"
              b"Subject: dots\r\n"
              b"\r\n"
              b".a line that starts with a dot\r\n"
              b"..and one with two\r\n"
              b".\r\n"
              b"last")


@needs_bench
def test_blast_messages_dir(relay, tmp_path):
    d = tmp_path / "msgs"
    d.mkdir()
    (d / "a.eml").write_bytes(SAMPLE_LF)
    (d / "b.eml").write_bytes(SAMPLE_DOT)
    (d / "sub").mkdir()     # not a regular file: skipped
    r = relay()
    rep = relay_blast(r, "--messages", "4", "--connections", "2",
                      "--messages-dir", str(d))
    assert rep["messages"]["accepted"] == 4

    # Each stored message ends with its file, line ends made CRLF.
    want = [SAMPLE_LF.replace(b"\n", b"\r\n"), SAMPLE_DOT + b"\r\n"]
    got = [r.queue_cat(qid) for qid in r.queue_ids()]
    assert len(got) == 4
    for w in want:
        assert sum(g.endswith(b"\r\n\r\n" + w.split(b"\r\n\r\n", 1)[1])
                   for g in got) == 2, (w, got)
        # The headers arrive too (waxseal may add its own above them).
        assert sum(w.split(b"\r\n\r\n", 1)[0] in g for g in got) == 2
    assert rep["bytes_sent"] == 2 * sum(len(w) for w in want)


@needs_bench
def test_blast_messages_dir_refused(tmp_path):
    target = ("--target", f"127.0.0.1:{free_port()}", "--messages", "1")
    empty = tmp_path / "empty"
    empty.mkdir()
    r = blast(*target, "--messages-dir", str(empty), timeout=10)
    assert r.returncode == 2 and str(empty) in r.stderr
    assert r.stdout == ""

    missing = tmp_path / "missing"
    r = blast(*target, "--messages-dir", str(missing), timeout=10)
    assert r.returncode == 2 and str(missing) in r.stderr

    big = tmp_path / "big"
    big.mkdir()
    with open(big / "huge.eml", "wb") as f:
        f.truncate(10 * 1024 * 1024 + 1)
    r = blast(*target, "--messages-dir", str(big), timeout=10)
    assert r.returncode == 2 and str(big) in r.stderr
    assert "10 MB" in r.stderr


@needs_bench
def test_blast_starttls(relay, tls_cert):
    cert, key = tls_cert
    r = relay("smtpd_tls_cert_file = %s" % cert,
              "smtpd_tls_key_file = %s" % key)
    rep = relay_blast(r, "--messages", "30", "--connections", "3",
                      "--starttls", "--pipelining=full")
    assert rep["messages"]["accepted"] == 30
    assert rep["tls"] in ("TLSv1.2", "TLSv1.3")
    assert rep["errors"]["connects"] == 3
    assert len(r.queue_ids()) == 30

    p = blast("--target", f"127.0.0.1:{r.port}", "--messages", "2",
              "--duration", "30", "--starttls", timeout=60)
    assert p.returncode == 0, p.stderr
    assert "tls         TLSv1." in p.stdout


@needs_bench
def test_blast_starttls_not_offered(relay):
    r = relay()
    target = f"127.0.0.1:{r.port}"
    p = blast("--target", target, "--messages", "5", "--connections", "2",
              "--duration", "30", "--starttls", "--json", timeout=60)
    assert p.returncode != 0
    assert "STARTTLS" in p.stderr and target in p.stderr
    assert json.loads(p.stdout)["messages"]["accepted"] == 0
    assert r.queue_ids() == set()
