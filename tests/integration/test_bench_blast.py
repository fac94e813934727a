"""waxseal-bench blast against Postfix's smtp-sink on loopback.

Checks the report's structure and counts, never its speed, and that blast
refuses to start without a limit or against a non-loopback target.

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
    return subprocess.run([BENCH, "blast"] + list(args),
                          capture_output=True, text=True, timeout=timeout)


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
