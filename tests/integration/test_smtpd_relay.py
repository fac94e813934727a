"""waxseal is never an open relay: a client outside mynetworks gets
"554 5.7.1" for every recipient, whatever the address looks like, and
nothing is queued; a client inside may relay to the same addresses."""

import smtplib
import socket

import pytest

import waxtest
from waxtest import check, queued_id

TRICKS = [
    # (path, mailbox as it should be queued for a trusted client,
    #  whether a syntax error is an acceptable answer)
    ("<a@example.com>", "a@example.com", False),
    ("<@a.example:user@b.example>", "user@b.example", False),
    ("<@a.example,@c.example:user@b.example>", "user@b.example", False),
    ("<user%b.example@relay.test>", "user%b.example@relay.test", False),
    ("<b.example!user@relay.test>", "b.example!user@relay.test", False),
    ('<"user@b.example"@relay.test>', '"user@b.example"@relay.test', False),
    ("<user@[127.0.0.1]>", "user@[127.0.0.1]", False),
    ("<user@relay.test>", "user@relay.test", False),
    ("<postmaster>", "postmaster", False),
    ("<user@b.example@relay.test>", None, True),
]


def untrusted(r):
    s = smtplib.SMTP(timeout=10, local_hostname="outside.test",
                     source_address=("127.0.0.2", 0))
    s.connect(r.host, r.port)
    return s


def test_untrusted_client_cannot_relay(relay):
    r = relay("mynetworks = 127.0.0.1/32")
    try:
        s = untrusted(r)
    except OSError as e:
        pytest.skip("cannot connect from 127.0.0.2: %s" % e)
    with s:
        s.ehlo()
        code, resp = s.mail("b@example.org")
        assert code == 250, resp
        for path, _, syntax_ok in TRICKS:
            code, resp = s.docmd("RCPT", "TO:" + path)
            if syntax_ok and code == 501:
                continue
            assert (code, resp[:5]) == (554, b"5.7.1"), (path, code, resp)
        code, resp = s.docmd("DATA")
        assert code == 554, (code, resp)
        # The rejected transaction leaves the session usable.
        code, resp = s.rset()
        assert code == 250
        code, resp = s.mail("<>")
        assert code == 250, resp
        code, resp = s.docmd("RCPT", "TO:<postmaster@relay.test>")
        assert code == 554, (code, resp)
        # BDAT has no recipients to deliver to either.
        s.send(b"BDAT 12 LAST\r\nSubject: x\r\n")
        code, resp = s.getreply()
        assert code == 554, (code, resp)
        code, resp = s.noop()
        assert code == 250, (code, resp)
    assert r.queue_list() == []
    assert "client=[127.0.0.2]" in r.log()
    assert r.log().count("relay access denied") >= len(TRICKS) - 1


def test_trusted_client_relays(relay):
    r = relay("mynetworks = 127.0.0.1/32")
    with r.client() as c:
        c.ehlo()
        c.expect("MAIL FROM:<b@example.org>", 250)
        want = []
        for path, mailbox, syntax_ok in TRICKS:
            rr = c.cmd("RCPT TO:" + path)
            if syntax_ok and rr.code == 501:
                continue
            check(rr, 250, "2.1.5", path)
            want.append(mailbox)
        c.expect("DATA", 354)
        c.send(b"From: b@example.org\r\nSubject: relay\r\n\r\nok\r\n.\r\n")
        qid = queued_id(c.reply())
    q = r.queue_list()
    assert [m["id"] for m in q] == [qid]
    assert q[0]["recipients"] == want, (q[0]["recipients"], want)


def test_ipv6_trusted_by_default(relay):
    if not waxtest.have_ipv6_loopback():
        pytest.skip("::1 is not available")
    r = relay(listen6=True)
    with waxtest.Client("::1", r.port6) as c:
        check(c.banner, 220)
        c.ehlo()
        qid = c.send_message("b@example.org", ["a@example.com"],
                             b"From: b@example.org\r\nSubject: v6\r\n\r\nover IPv6\r\n")
        c.expect("QUIT", 221)
    stored = r.queue_cat(qid)
    assert stored.startswith(b"Received: from client.test ([IPv6:::1])"), \
        stored
    # IPv4 on the same daemon still works.
    with r.client() as c:
        c.ehlo()
        c.send_message("b@example.org", ["a@example.com"],
                       b"From: b@example.org\r\nSubject: v4\r\n\r\nover IPv4\r\n")
    assert len(r.queue_list()) == 2


def test_ipv6_untrusted(relay):
    if not waxtest.have_ipv6_loopback():
        pytest.skip("::1 is not available")
    r = relay("mynetworks = 127.0.0.0/8", listen6=True)
    with waxtest.Client("::1", r.port6) as c:
        c.ehlo()
        c.expect("MAIL FROM:<b@example.org>", 250)
        check(c.cmd("RCPT TO:<a@example.com>"), 554, "5.7.1")
        check(c.cmd("DATA"), 554)
    assert r.queue_list() == []
