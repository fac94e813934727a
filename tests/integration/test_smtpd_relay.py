"""waxseal is never an open relay: a client outside mynetworks gets
"554 5.7.1" for every recipient, whatever the address looks like, and
nothing is queued; a client inside may relay to the same addresses."""

import signal
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


def relay_answer(r, source):
    """The RCPT reply a client from source gets (smtplib, a peer we did
    not write)."""
    s = smtplib.SMTP(timeout=10, local_hostname="client.test",
                     source_address=(source, 0))
    s.connect(r.host, r.port)
    with s:
        s.ehlo()
        code, resp = s.mail("b@example.org")
        assert code == 250, resp
        return s.docmd("RCPT", "TO:<a@example.com>")


def test_mynetworks_from_postfix_tables(relay, tmp_path):
    """mynetworks as a Postfix main.cf writes it: a "!" exception first,
    then a cidr_table(5) file; SIGHUP reads the table again."""
    table = tmp_path / "clients.cidr"
    table.write_text("# trusted senders\n127.0.0.0/8\tOK\n")
    r = relay("mynetworks = !127.0.0.3, cidr:%s" % table)
    try:
        code, resp = relay_answer(r, "127.0.0.2")
    except OSError as e:
        pytest.skip("cannot connect from 127.0.0.2: %s" % e)
    assert code == 250, resp
    code, resp = relay_answer(r, "127.0.0.3")
    assert (code, resp[:5]) == (554, b"5.7.1"), resp

    # The table changes; new sessions follow it after SIGHUP.
    table.write_text("127.0.0.2 OK\n")
    r.signal(signal.SIGHUP)
    r.wait_log(r"reloaded config=")
    assert relay_answer(r, "127.0.0.2")[0] == 250
    code, resp = relay_answer(r, "127.0.0.4")
    assert (code, resp[:5]) == (554, b"5.7.1"), resp

    # A broken table is refused with its file and line, and the
    # running list stays.
    table.write_text("127.0.0.2 OK\nmail.example.com OK\n")
    r.signal(signal.SIGHUP)
    r.wait_log(r"reload-failed")
    assert "%s line 2: not a network address/prefix: mail.example.com" \
        % table in r.log()
    assert relay_answer(r, "127.0.0.2")[0] == 250
    assert relay_answer(r, "127.0.0.4")[0] == 554


def test_mynetworks_bad_file_at_start(relay, tmp_path):
    """A pattern file that cannot be read stops the start with a message
    that names it."""
    r = relay("mynetworks = %s/none" % tmp_path, start=False)
    with pytest.raises(waxtest.DaemonError):
        r.start(timeout=5)
    assert "%s/none: No such file or directory" % tmp_path in r.run_log()
