"""waxseal's SMTP server driven by swaks: pipelining, STARTTLS, a message
from a file, and both protocol flavours."""

import re
import shutil
import subprocess

import pytest

from waxtest import split_stored

SWAKS = shutil.which("swaks")
pytestmark = pytest.mark.skipif(SWAKS is None, reason="swaks not installed")


def swaks(r, *args, timeout=60):
    cmd = [SWAKS, "--server", "%s:%d" % (r.host, r.port),
           "--to", "a@example.com", "--from", "b@example.org",
           "--helo", "swaks.client.test", "--timeout", "15"] + list(args)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, "swaks exited %d:\n%s" % (p.returncode, out)
    m = re.findall(r"<[-~]  250 2\.0\.0 Ok: queued as ([0-9A-F]{16})", out)
    assert len(m) == 1, out
    return m[0], out


def only_message(r, qid):
    q = r.queue_list()
    assert [m["id"] for m in q] == [qid], q
    assert q[0]["sender"] == "b@example.org"
    assert q[0]["recipients"] == ["a@example.com"]
    return r.queue_cat(qid)


def test_pipeline(relay):
    r = relay()
    qid, out = swaks(r, "--pipeline")
    # swaks sent MAIL, RCPT and DATA in one go and saw every reply.
    assert re.search(r" -> MAIL FROM:<b@example.org>\n\s* -> RCPT TO:"
                     r"<a@example.com>\n\s* -> DATA", out), out
    stored = only_message(r, qid)
    assert re.search(rb"with ESMTP(?=[;\r])", stored), stored


def test_tls(relay, tls_cert):
    cert, key = tls_cert
    r = relay("smtpd_tls_cert_file = %s" % cert,
              "smtpd_tls_key_file = %s" % key)
    qid, out = swaks(r, "--tls")
    assert "TLS started" in out, out
    stored = only_message(r, qid)
    assert b"with ESMTPS" in stored, stored
    assert re.search(rb"\(using TLSv1\.[23] with cipher \S+ \(\d+ bits\)\)",
                     stored), stored


def test_data_from_file(relay, tmp_path):
    r = relay()
    headers = ("From: b@example.org\nTo: a@example.com\n"
               "Subject: from a file\nMessage-ID: <file.1@example.org>\n"
               "Date: Tue, 2 Jan 2024 10:00:00 +0000\n")
    body = ("line one\n.starts with a dot\n\n" + "x" * 998 + "\n"
            "last\n")
    f = tmp_path / "msg.eml"
    # swaks adds the line end before its final dot itself.
    f.write_text(headers + "\n" + body[:-1])
    qid, _ = swaks(r, "--data", "@%s" % f, "--pipeline")
    stored = only_message(r, qid)
    crlf = lambda s: s.replace("\n", "\r\n").encode()
    _, _, added, got = split_stored(stored, crlf(headers))
    assert added == b""
    assert got == crlf(body), got


@pytest.mark.parametrize("proto,word", [("ESMTP", b"ESMTP"),
                                        ("SMTP", b"SMTP")])
def test_protocol(relay, proto, word):
    r = relay()
    qid, out = swaks(r, "--protocol", proto)
    assert (" -> EHLO " if proto == "ESMTP" else " -> HELO ") in out, out
    stored = only_message(r, qid)
    assert re.search(rb"by relay\.test \(waxseal\) with " + word + rb"(?=[;\r])",
                     stored), stored


def test_many_swaks_runs(relay):
    """Sessions one after another on one daemon."""
    r = relay()
    ids = {swaks(r, "--pipeline", "--header", "X-Run: %d" % i)[0]
           for i in range(5)}
    assert r.queue_ids() == ids
