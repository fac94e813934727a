"""waxseal-bench sink, the destination emulator, on loopback.

Real SMTP clients (Python's smtplib, plain and with STARTTLS, and a raw
socket for pipelining) talk to a sink with several listeners; the JSON
report it writes at SIGTERM must count exactly what was sent, per
destination. DKIM: a message signed by `waxseal sign` with a key made by
`waxseal genkey` passes, the same message changed by one byte fails.
The per-destination failure options (tempfail, permfail, reject421,
drop) answer as documented, and a non-loopback address is refused
without --allow-remote.

Environment: WAXSEAL_BIN is <build>/relay/waxseal; the bench is
<build>/bench/waxseal-bench (WAXSEAL_BENCH overrides).
"""
import json
import os
import signal
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

from test_bench_blast import BENCH, needs_bench
from waxtest import waxseal_bin

MSG = (b"From: News <news@example.com>\r\n"
       b"To: reader@example.net\r\n"
       b"Subject: this week\r\n"
       b"Message-ID: <1@example.com>\r\n"
       b"\r\n"
       b"Hello.\r\n"
       b".a line that starts with a dot\r\n")


def free_port(host="127.0.0.1"):
    """A TCP port nobody listens on right now at host."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Sink:
    """A running sink; stop() sends SIGTERM and returns the report."""

    def __init__(self, tmp_path, listens, *args):
        self.ready = tmp_path / "ready"
        self.report = tmp_path / "report.json"
        for p in (self.ready, self.report):
            if p.exists():
                p.unlink()
        cmd = [BENCH, "sink", "--duration", "60", "--json",
               "--ready-file", str(self.ready),
               "--report-file", str(self.report)]
        for spec in listens:
            cmd += ["--listen", spec]
        self.proc = subprocess.Popen(cmd + list(args),
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while not self.ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                out, err = self.proc.communicate(timeout=10)
                pytest.fail(f"sink did not get ready: {err.decode()}")
            time.sleep(0.02)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=10)
        err = err.decode(errors="replace")
        assert self.proc.returncode == 0, err
        assert "Sanitizer" not in err and "runtime error" not in err, err
        rep = json.loads(out)
        assert json.loads(self.report.read_text()) == rep
        return rep

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=10)


@pytest.fixture
def sinks():
    made = []
    yield made
    for s in made:
        s.kill()


def txt_key(tmp_path):
    """An ed25519 key from waxseal genkey, its record file, a sign conf."""
    d = tmp_path / "keys"
    d.mkdir()
    subprocess.run([waxseal_bin(), "genkey", "-d", "example.com", "-s",
                    "sel", "-t", "ed25519", "-D", str(d)], check=True,
                   timeout=30)
    (d / "kt").write_text(f"sel example.com:sel:{d}/sel.private\n")
    (d / "st").write_text("*@example.com sel\n")
    conf = d / "sign.conf"
    conf.write_text(f"dkim_key_table = file:{d}/kt\n"
                    f"dkim_signing_table = refile:{d}/st\n")
    return d / "sel.txt", conf


def wax_sign(conf, msg):
    p = subprocess.run([waxseal_bin(), "sign", "-c", str(conf)], input=msg,
                       capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert b"DKIM-Signature:" in p.stdout
    return p.stdout


def dest(rep, listen):
    return next(d for d in rep["destinations"] if d["listen"] == listen)


def unverified_tls():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@needs_bench
def test_sink_counts_tls_dkim_concurrency(tmp_path, sinks):
    txt, conf = txt_key(tmp_path)
    signed = wax_sign(conf, MSG)
    tampered = signed.replace(b"Hello.", b"Hello!")
    a = f"127.0.0.1:{free_port('127.0.0.1')}"
    b = f"127.0.0.2:{free_port('127.0.0.2')}"
    s = Sink(tmp_path, [a, b], "--tls", "--dkim-key",
             f"example.com:sel:{txt}")
    sinks.append(s)
    ha, pa = a.rsplit(":", 1)
    hb, pb = b.rsplit(":", 1)

    # One connection to a: plain text, then STARTTLS (RFC 3207).
    with smtplib.SMTP(ha, int(pa), timeout=10) as c:
        code, caps = c.ehlo("client.test")
        assert code == 250
        for ext in (b"PIPELINING", b"8BITMIME", b"SIZE", b"SMTPUTF8",
                    b"STARTTLS", b"ENHANCEDSTATUSCODES"):
            assert ext in caps, caps
        assert c.sendmail("news@example.com", ["r@example.net"], MSG) == {}
        c.starttls(context=unverified_tls())
        code, caps = c.ehlo("client.test")
        assert code == 250 and b"STARTTLS" not in caps, caps
        assert c.sendmail("news@example.com", ["r@example.net"],
                          signed) == {}
        assert c.sendmail("news@example.com", ["r@example.net"],
                          tampered) == {}

    # Three connections open at once to b, each with one message.
    conns = [smtplib.SMTP(hb, int(pb), timeout=10) for _ in range(3)]
    try:
        for c in conns:
            assert c.ehlo("client.test")[0] == 250
        for c in conns:
            assert c.sendmail("news@example.com",
                              ["r1@example.net", "r2@example.net"],
                              MSG) == {}
    finally:
        for c in conns:
            c.quit()

    rep = s.stop()
    assert rep["stop_reason"] == "signal"
    assert rep["messages"] == 6 and rep["recipients"] == 9
    # smtplib stuffs the dot line, the sink takes it out again.
    assert rep["bytes"] == 4 * len(MSG) + len(signed) + len(tampered)
    assert rep["connections"] == 4
    assert rep["replies"] == {"2xx": 6 + 9, "4xx": 0, "5xx": 0}
    assert rep["dkim"] == {"verified": 6, "pass": 1, "fail": 1, "none": 4}
    assert rep["elapsed_s"] > 0 and rep["messages_per_s"] > 0

    da, db = dest(rep, a), dest(rep, b)
    assert (da["messages"], da["recipients"], da["connections"]) == (3, 3, 1)
    assert da["max_concurrent"] == 1 and da["tls_sessions"] == 1
    assert (da["dkim_pass"], da["dkim_fail"]) == (1, 1)
    assert (db["messages"], db["recipients"], db["connections"]) == (3, 6, 3)
    assert db["max_concurrent"] == 3 and db["tls_sessions"] == 0
    assert (db["dkim_pass"], db["dkim_fail"]) == (0, 0)


def read_replies(sock, n, timeout=10):
    """n complete SMTP replies (multi-line ones joined), as codes."""
    buf, codes = b"", []
    sock.settimeout(timeout)
    while len(codes) < n:
        while b"\r\n" not in buf:
            chunk = sock.recv(65536)
            assert chunk, f"closed after {codes}"
            buf += chunk
        line, buf = buf.split(b"\r\n", 1)
        if line[3:4] != b"-":
            codes.append(int(line[:3]))
    return codes


@needs_bench
def test_sink_pipelining_and_end_of_data(tmp_path, sinks):
    a = f"127.0.0.1:{free_port()}"
    s = Sink(tmp_path, [a])
    sinks.append(s)
    host, port = a.rsplit(":", 1)

    # Bare LFs around a dot end nothing (RFC 5321 4.1.1.4); only
    # CRLF.CRLF does, and the next commands ride the same write. The
    # leading dots of ".<LF>more" and "..two" go (4.5.2), the one after
    # a bare LF stays, and so does the final dot's CRLF.
    body = (b"Subject: s\r\n\r\nline\n.\nstill\r\n.\nmore\r\n..two\r\n"
            b".\r\n")
    stored = len(body) - 3 - 2
    with socket.create_connection((host, int(port)), timeout=10) as c:
        assert read_replies(c, 1) == [220]
        c.sendall(b"EHLO client.test\r\n")
        assert read_replies(c, 1) == [250]
        c.sendall(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>"
                  b"\r\nDATA\r\n")
        assert read_replies(c, 3) == [250, 250, 354]
        c.sendall(body + b"RSET\r\nNOOP\r\nMAIL FROM:<a@example.com>\r\n"
                  b"DATA\r\nRCPT TO:<c@example.net>\r\nDATA\r\n")
        assert read_replies(c, 7) == [250, 250, 250, 250, 554, 250, 354]
        c.sendall(b"x\r\n.\r\nQUIT\r\n")
        assert read_replies(c, 2) == [250, 221]

    rep = s.stop()
    assert rep["messages"] == 2 and rep["recipients"] == 2
    assert rep["bytes"] == stored + 3


@needs_bench
def test_sink_chunking(tmp_path, sinks):
    """BDAT (RFC 3030): chunks of exactly the announced size, whatever
    they hold (no dot-stuffing, CRLF.CRLF inside is content), the reply
    after each chunk, refused chunks read and dropped, DKIM checked on a
    message sent in pieces."""
    txt, conf = txt_key(tmp_path)
    signed = wax_sign(conf, MSG)
    a = f"127.0.0.1:{free_port()}"
    s = Sink(tmp_path, [a], "--dkim-key", f"example.com:sel:{txt}",
             "--verify-every", "1")
    sinks.append(s)
    host, port = a.rsplit(":", 1)
    odd = b"Subject: raw\r\n\r\n.dot\r\n.\r\nBDAT 5\r\n"
    with socket.create_connection((host, int(port)), timeout=10) as c:
        assert read_replies(c, 1) == [220]
        c.sendall(b"EHLO client.test\r\n")
        caps = b""
        c.settimeout(10)
        while b"250 " not in caps:
            caps += c.recv(4096)
        assert b"250-CHUNKING" in caps, caps

        # A chunk before MAIL is read and refused; the stream goes on.
        c.sendall(b"BDAT 4 LAST\r\nabcdNOOP\r\n")
        assert read_replies(c, 2) == [503, 250]

        # One pipelined write: envelope, a chunk that looks like the end
        # of DATA and like a command, then an empty LAST chunk.
        c.sendall(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>"
                  b"\r\nBDAT %d\r\n" % len(odd) + odd +
                  b"BDAT 0 LAST\r\n")
        assert read_replies(c, 4) == [250, 250, 250, 250]

        # The signed message in three chunks, DKIM checked at the end.
        cut = [0, 10, len(signed) // 2, len(signed)]
        c.sendall(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>"
                  b"\r\n")
        for i in range(3):
            part = signed[cut[i]:cut[i + 1]]
            last = b" LAST" if i == 2 else b""
            c.sendall(b"BDAT %d%s\r\n" % (len(part), last) + part)
        assert read_replies(c, 5) == [250, 250, 250, 250, 250]

        # No valid recipient: the chunk is read, refused with 554.
        c.sendall(b"MAIL FROM:<a@example.com>\r\nBDAT 3 LAST\r\nxyz"
                  b"QUIT\r\n")
        assert read_replies(c, 3) == [250, 554, 221]

    rep = s.stop()
    assert rep["messages"] == 2 and rep["recipients"] == 2
    assert rep["bytes"] == len(odd) + len(signed)
    assert rep["dkim"]["pass"] == 1 and rep["dkim"]["fail"] == 0, rep


@needs_bench
def test_sink_failure_options(tmp_path, sinks):
    temp = f"127.0.0.1:{free_port()},tempfail=100"
    perm = f"127.0.0.1:{free_port()},permfail=100,latency=50"
    busy = f"127.0.0.1:{free_port()},reject421=100"
    drop = f"[::1]:{free_port('::1')},drop=100"
    s = Sink(tmp_path, [temp, perm, busy, drop])
    sinks.append(s)

    def hp(spec):
        addr = spec.split(",")[0]
        host, port = addr.rsplit(":", 1)
        return host.strip("[]"), int(port)

    with smtplib.SMTP(*hp(temp), timeout=10) as c:
        c.ehlo("client.test")
        c.mail("a@example.com")
        assert c.rcpt("b@example.net") == (451, b"4.3.0 try again later")
    with smtplib.SMTP(*hp(perm), timeout=10) as c:
        c.ehlo("client.test")
        c.mail("a@example.com")
        assert c.rcpt("b@example.net") == (550, b"5.1.1 no such user")

    with pytest.raises(smtplib.SMTPConnectError) as e:
        smtplib.SMTP(*hp(busy), timeout=10)
    assert e.value.smtp_code == 421

    with smtplib.SMTP(*hp(drop), timeout=10) as c:
        c.ehlo("client.test")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            c.sendmail("a@example.com", ["b@example.net"], MSG)

    rep = s.stop()
    assert rep["messages"] == 0
    assert rep["replies"] == {"2xx": 1, "4xx": 2, "5xx": 1}
    assert rep["dropped"] == 1
    d = {x["listen"]: x for x in rep["destinations"]}
    assert d[temp.split(",")[0]]["tempfails"] == 1
    assert d[perm.split(",")[0]]["permfails"] == 1
    assert d[busy.split(",")[0]]["rejected_421"] == 1
    assert d[busy.split(",")[0]]["connections"] == 1
    assert d[drop.split(",")[0]]["dropped"] == 1
    assert d[drop.split(",")[0]]["messages"] == 0


@needs_bench
def test_sink_message_limit_and_latency(tmp_path):
    a = f"127.0.0.1:{free_port()},latency=200"
    ready = tmp_path / "ready"
    p = subprocess.Popen([BENCH, "sink", "--listen", a, "--messages", "2",
                          "--duration", "30", "--ready-file", str(ready),
                          "--json"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not ready.exists():
            assert p.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        host, port = a.split(",")[0].rsplit(":", 1)
        with smtplib.SMTP(host, int(port), timeout=10) as c:
            c.ehlo("client.test")
            t = time.monotonic()
            assert c.sendmail("a@example.com", ["b@example.net"], MSG) == {}
            assert time.monotonic() - t >= 0.2

            # The second message ends the run; its held reply still
            # comes, without the wait.
            assert c.sendmail("a@example.com", ["b@example.net"], MSG) == {}
        out, err = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate(timeout=10)
    assert p.returncode == 0, err
    rep = json.loads(out)
    assert rep["stop_reason"] == "messages" and rep["messages"] == 2


@needs_bench
@pytest.mark.parametrize("listen", ["192.0.2.1:2525", "[2001:db8::1]:25"])
def test_sink_refuses_remote_address(listen):
    r = subprocess.run([BENCH, "sink", "--listen", listen],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
    assert "--allow-remote" in r.stderr and "loopback" in r.stderr


@needs_bench
@pytest.mark.parametrize("args", [
    ["--listen", "127.0.0.1:0"],
    ["--listen", "127.0.0.1:2525,tempfail=101"],
    ["--listen", "127.0.0.1:2525,colour=blue"],
    ["--listen", "localhost:2525"],
    ["--listen", "127.0.0.1:2525", "--duration", "3601"],
    []])
def test_sink_usage_errors(args):
    r = subprocess.run([BENCH, "sink"] + args, capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 2, r.stderr
    assert r.stderr
