"""Load from Postfix's smtp-source: many parallel sessions, each message
must end up in the spool exactly once."""

import os
import subprocess

import pytest

SOURCE = "/usr/sbin/smtp-source"
pytestmark = pytest.mark.skipif(not os.access(SOURCE, os.X_OK),
                                reason="Postfix smtp-source not installed")


def run_source(r, *args, timeout=150):
    cmd = [SOURCE] + list(args) + ["-f", "sender@example.org",
                                   "-t", "rcpt@example.com",
                                   "%s:%d" % (r.host, r.port)]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, "smtp-source exited %d:\n%s\n%s" % (
        p.returncode, out, r.run_log()[-3000:])
    return out


def check_queue(r, n, length):
    q = r.queue_list()
    assert len(q) == n, "%d messages queued, expected %d" % (len(q), n)
    assert len({m["id"] for m in q}) == n, "duplicate queue IDs"
    for m in q:
        assert m["sender"] == "sender@example.org", m
        assert m["recipients"] == ["rcpt@example.com"], m
        # -l bytes of body, plus headers and our Received.
        assert m["size"] > length, m
    logged = r.run_log().count(" queued from=<sender@example.org> ")
    assert logged == n, "%d queued log lines, expected %d" % (logged, n)


def test_source_sessions(relay):
    r = relay()
    run_source(r, "-s", "20", "-m", "2000", "-l", "2048")
    check_queue(r, 2000, 2048)


def test_source_persistent(relay):
    r = relay()
    run_source(r, "-d", "-s", "20", "-m", "2000", "-l", "2048")
    check_queue(r, 2000, 2048)


def test_source_content(relay):
    """One message, many recipients, a subject: stored as sent."""
    r = relay()
    run_source(r, "-m", "1", "-r", "5", "-l", "5000", "-S", "load test")
    q = r.queue_list()
    assert len(q) == 1, q
    assert len(q[0]["recipients"]) == 5, q
    stored = r.queue_cat(q[0]["id"])
    assert b"\r\nSubject: load test\r\n" in stored, stored[:2000]
    body = stored.split(b"\r\n\r\n", 1)[1]
    assert len(body) >= 5000, len(body)
