"""Signals: SIGTERM lets an open transaction finish and closes idle
sessions with 421; SIGHUP gives new sessions the new configuration and
leaves open ones on the old."""

import signal
import socket
import time

import pytest

import waxtest
from waxtest import check, queued_id


def test_sigterm_during_transaction(relay):
    r = relay()
    busy = r.client()
    idle = r.client()
    try:
        busy.ehlo()
        busy.expect("MAIL FROM:<b@example.org>", 250)
        busy.expect("RCPT TO:<a@example.com>", 250)
        busy.expect("DATA", 354)
        busy.send(b"From: b@example.org\r\nSubject: shutdown\r\n\r\nfirst half\r\n")
        idle.ehlo()
        time.sleep(0.2)

        r.signal(signal.SIGTERM)
        t0 = time.monotonic()
        rr = idle.reply()
        check(rr, 421, "4.3.2")
        assert time.monotonic() - t0 < 3
        assert idle.closed(3.0)
        r.wait_log(r"stopping signal=TERM")

        # No new connections once stopping.
        with pytest.raises(OSError):
            with socket.create_connection((r.host, r.port), timeout=2) as s:
                s.settimeout(2)
                if not s.recv(100).startswith(b"421"):
                    raise AssertionError("accepted while stopping")
                raise OSError("421 while stopping")

        assert r.running(), "exited with a transaction open"
        busy.send(b"second half\r\n.\r\n")
        qid = queued_id(busy.reply())
        # Between transactions now: told to go.
        check(busy.reply(), 421, "4.3.2")
        assert busy.closed(3.0)
    finally:
        busy.close()
        idle.close()

    rc = r.wait_exit(15)
    assert rc == 0, r.run_log()
    r.check_sanitizers()
    q = r.queue_list()
    assert [m["id"] for m in q] == [qid]
    assert r.queue_cat(qid).endswith(b"\r\n\r\nfirst half\r\nsecond half\r\n")


def test_sigterm_idle(relay):
    """No sessions: exit at once."""
    r = relay()
    t0 = time.monotonic()
    r.stop()
    assert time.monotonic() - t0 < 5
    assert "stopped messages=0" in r.run_log()
    r.start()
    with r.client() as c:
        c.ehlo()
        c.send_message("b@example.org", ["a@example.com"],
                       b"From: b@example.org\r\nSubject: x\r\n\r\ny\r\n")
    r.stop()
    assert "stopped messages=1" in r.run_log()


def ehlo_size(c):
    rr = c.ehlo()
    sizes = [ln[9:] for ln in rr.lines if ln[4:9] == b"SIZE "]
    assert len(sizes) == 1, rr
    return int(sizes[0])


def test_sighup_reload(relay):
    r = relay("message_size_limit = 100000")
    old = r.client()
    try:
        assert ehlo_size(old) == 100000
        r.write_config(["message_size_limit = 50000"])
        r.signal(signal.SIGHUP)
        r.wait_log(r"reloaded config=")
        with r.client() as c:
            assert ehlo_size(c) == 50000
            check(c.cmd("MAIL FROM:<b@example.org> SIZE=60000"), 552,
                  "5.3.4")
        # The session opened before keeps its configuration.
        assert ehlo_size(old) == 100000
        old.expect("MAIL FROM:<b@example.org> SIZE=60000", 250)
        old.expect("QUIT", 221)
    finally:
        old.close()

    # A broken file is refused and the running configuration stays.
    r.conf.write_text(r.conf.read_text() + "no_such_parameter = 1\n")
    r.signal(signal.SIGHUP)
    r.wait_log(r"reload-failed")
    with r.client() as c:
        assert ehlo_size(c) == 50000
    assert r.running()
    r.write_config()
