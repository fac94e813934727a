"""waxseal's SMTP server at and past its limits, by raw socket: sizes,
recipients, line lengths (RFC 5321 section 4.5.3.1), NUL, syntax errors,
the error limit, timeouts, connection limits, hop counts, and pipelining
(RFC 2920)."""

import socket
import time

import pytest

import waxtest
from waxtest import check, queued_id

MAIL = b"MAIL FROM:<b@example.org>\r\n"
RCPT = b"RCPT TO:<a@example.com>\r\n"


def good_message(c, tag=b"ok"):
    """A normal transaction on c: proves the session is in sync."""
    return c.send_message("b@example.org", ["a@example.com"],
                          b"From: b@example.org\r\nSubject: " + tag + b"\r\n\r\n" + tag + b"\r\n")


def test_message_too_big(relay):
    r = relay("message_size_limit = 10000")
    with r.client() as c:
        rr = c.ehlo()
        assert b"250-SIZE 10000" in rr.lines, rr
        c.expect("MAIL FROM:<b@example.org> SIZE=10001", 552)
        check(c.cmd("MAIL FROM:<b@example.org> SIZE=20000"), 552, "5.3.4")
        c.expect("MAIL FROM:<b@example.org> SIZE=9000", 250)
        c.expect("RCPT TO:<a@example.com>", 250)
        c.expect("DATA", 354)
        c.send(b"From: b@example.org\r\nSubject: big\r\n\r\n" + (b"y" * 78 + b"\r\n") * 200 +
               b".\r\n")
        check(c.reply(), 552, "5.3.4", "20000-octet message")
        good_message(c)
    assert len(r.queue_list()) == 1


def test_message_at_size_limit(relay):
    r = relay("message_size_limit = 10000")
    body = b"From: b@example.org\r\nSubject: edge\r\n\r\n"
    body += (b"z" * 98 + b"\r\n") * ((10000 - len(body)) // 100)
    body += b"z" * (10000 - len(body) - 2) + b"\r\n"
    assert len(body) == 10000
    with r.client() as c:
        c.ehlo()
        qid = c.send_message("b@example.org", ["a@example.com"], body)
    assert r.queue_cat(qid).endswith(body.split(b"\r\n\r\n")[1])


def test_recipient_limit(relay):
    r = relay("smtpd_recipient_limit = 5")
    with r.client() as c:
        c.ehlo()
        c.expect("MAIL FROM:<b@example.org>", 250)
        for i in range(5):
            c.expect("RCPT TO:<r%d@example.com>" % i, 250)
        check(c.cmd("RCPT TO:<r5@example.com>"), 452, "4.5.3")
        check(c.cmd("RCPT TO:<r6@example.com>"), 452, "4.5.3")
        c.expect("DATA", 354)
        c.send(b"From: b@example.org\r\nSubject: five\r\n\r\nfive\r\n.\r\n")
        qid = queued_id(c.reply())
    q = r.queue_list()
    assert [m["id"] for m in q] == [qid]
    assert q[0]["recipients"] == ["r%d@example.com" % i for i in range(5)]


def test_long_command_line(relay):
    r = relay()
    with r.client() as c:
        c.ehlo()
        # 512 octets with CRLF is allowed.
        c.expect(b"NOOP " + b"x" * (512 - 7), 250)
        check(c.cmd(b"NOOP " + b"x" * 600), 500, "5.5.")
        c.expect("NOOP", 250)
        # Longer than any buffer the server might read at once.
        check(c.cmd(b"MAIL FROM:<" + b"a" * 70000 + b"@example.org>"),
              500, "5.5.")
        c.expect("NOOP", 250)
        good_message(c)


def test_long_text_line(relay):
    r = relay()
    with r.client() as c:
        c.ehlo()
        c.expect("MAIL FROM:<b@example.org>", 250)
        c.expect("RCPT TO:<a@example.com>", 250)
        c.expect("DATA", 354)
        # Exactly 1000 with CRLF is allowed; 1001 is not.
        c.send(b"From: b@example.org\r\nSubject: long\r\n\r\n" + b"a" * 998 + b"\r\n" +
               b"b" * 999 + b"\r\nafter\r\n")
        # No reply may come before the end of data.
        assert c.closed(0.3) is False and c.buf == b"", c.buf
        c.send(b".\r\n")
        check(c.reply(), 500, "5.5.", "1001-octet line")
        qid = good_message(c)
        # The 1000-octet line passes.
        c.expect("MAIL FROM:<b@example.org>", 250)
        c.expect("RCPT TO:<a@example.com>", 250)
        c.expect("DATA", 354)
        c.send(b"From: b@example.org\r\nSubject: edge\r\n\r\n" + b"a" * 998 + b"\r\n.\r\n")
        qid2 = queued_id(c.reply())
    assert r.queue_ids() == {qid, qid2}


def test_nul_in_command(relay):
    r = relay()
    with r.client() as c:
        c.ehlo()
        check(c.cmd(b"NO\x00OP"), 500, "5.5.")
        check(c.cmd(b"MAIL FROM:<b@exa\x00mple.org>"), 500, "5.5.")
        good_message(c)


def test_nul_in_data(relay):
    r = relay()
    with r.client() as c:
        c.ehlo()
        c.expect("MAIL FROM:<b@example.org>", 250)
        c.expect("RCPT TO:<a@example.com>", 250)
        c.expect("DATA", 354)
        c.send(b"From: b@example.org\r\nSubject: nul\r\n\r\nbefore\x00after\r\n.\r\n")
        check(c.reply(), 500, "5.5.", "NUL in data")
        qid = good_message(c)
    assert r.queue_ids() == {qid}


def test_syntax_errors(relay):
    r = relay("smtpd_hard_error_limit = 100")
    with r.client() as c:
        for line, code, enh in [
                ("EHLO", 501, "5.5.4"),
                ("HELO", 501, "5.5.4"),
                ("EHLO bad host", 501, "5.5.4")]:
            check(c.cmd(line), code, enh, line)
        c.ehlo()
        for line, code, enh in [
                ("MAIL", 501, "5.5.4"),
                ("MAIL TO:<b@example.org>", 501, "5.5.4"),
                ("MAIL FROM:b@example.org", 501, "5.1.7"),
                ("MAIL FROM:<b@example.org", 501, "5.1.7"),
                ("MAIL FROM:<b@@example.org>", 501, "5.1.7"),
                ("MAIL FROM:<b@example.org> SIZE=abc", 501, "5.5.4"),
                ("MAIL FROM:<b@example.org> SIZE=1 SIZE=2", 501, "5.5.4"),
                ("MAIL FROM:<b@example.org> BODY=9BIT", 501, "5.5.4"),
                ("MAIL FROM:<b@example.org> FOO=bar", 555, "5.5.4"),
                ("RCPT TO:<a@example.com>", 503, "5.5.1"),
                ("DATA", 503, "5.5.1"),
                ("BDAT x", 501, "5.5.4"),
                ("VRFY", 501, "5.5.4"),
                ("NOOP", 250, "2.0.0")]:
            rr = c.cmd(line)
            check(rr, code, enh, line)
            if code == 501:
                # The reason is stated, not just a code.
                assert len(rr.lines[0]) > len("501 5.5.4 "), rr
        c.expect("MAIL FROM:<b@example.org>", 250)
        check(c.cmd("MAIL FROM:<b@example.org>"), 503, "5.5.1")
        for line, code, enh in [
                ("RCPT", 501, "5.5.4"),
                ("RCPT TO:a@example.com", 501, "5.1.3"),
                ("RCPT TO:<a@>", 501, "5.1.3"),
                ("RCPT TO:<>", 501, "5.1.3"),
                ("RCPT TO:<a@example.com> SMTPUTF8", 555, "5.5.4"),
                ("DATA", 554, "5.5.1"),
                ("DATA x", 501, "5.5.4")]:
            check(c.cmd(line), code, enh, line)
        c.expect("RSET", 250)
        good_message(c)


def test_mail_before_ehlo(relay):
    """RFC 5321 section 4.1.4: a client must greet before a transaction."""
    r = relay()
    with r.client() as c:
        check(c.cmd("MAIL FROM:<b@example.org>"), 503, "5.5.1")
        c.ehlo()
        good_message(c)


def test_hard_error_limit(relay):
    r = relay("smtpd_hard_error_limit = 5")
    with r.client() as c:
        c.ehlo()
        for i in range(4):
            check(c.cmd("BOGUS%d" % i), 500, "5.5.2")
        c.send(b"BOGUS4\r\n")
        check(c.reply(), 500, "5.5.2")
        check(c.reply(), 421)
        assert c.closed(3.0), "connection still open after 421"
    # The limit is per session: a new one starts from zero.
    with r.client() as c:
        c.ehlo()
        for i in range(4):
            check(c.cmd("BOGUS%d" % i), 500)
        good_message(c)


def test_idle_timeout(relay):
    r = relay("smtpd_idle_timeout = 1s")
    with r.client() as c:
        c.ehlo()
        t0 = time.monotonic()
        rr = c.reply()
        took = time.monotonic() - t0
        check(rr, 421, "4.4.2")
        assert 0.7 < took < 5, took
        assert c.closed(3.0)
    # Activity restarts the clock.
    with r.client() as c:
        c.ehlo()
        for _ in range(4):
            time.sleep(0.5)
            c.expect("NOOP", 250)


def test_command_timeout(relay):
    r = relay("smtpd_timeout = 1s", "smtpd_data_timeout = 1s")
    with r.client() as c:
        c.ehlo()
        c.expect("MAIL FROM:<b@example.org>", 250)
        c.expect("RCPT TO:<a@example.com>", 250)
        c.expect("DATA", 354)
        c.send(b"From: b@example.org\r\nSubject: slow\r\n\r\nhalf a mess")
        rr = c.reply()
        check(rr, 421, "4.4.2")
        assert c.closed(3.0)
    assert r.queue_list() == []


def test_max_connections(relay):
    r = relay("smtpd_max_connections = 3")
    held = []
    try:
        # The fixture's readiness probe may not be gone yet: a 421 while
        # fewer than three are held is retried, bounded.
        for _ in range(100):
            if len(held) == 3:
                break
            c = r.client()
            if c.banner.code == 220:
                held.append(c)
                continue
            c.close()
            time.sleep(0.05)
        assert len(held) == 3, "could not hold 3 connections"
        with r.client() as c4:
            check(c4.banner, 421, "4.3.2")
            assert c4.closed(3.0)
        # The three still work.
        for c in held:
            c.ehlo()
        good_message(held[0])
        held.pop().close()
        # A slot is free again once one has gone.
        ok = False
        for _ in range(50):
            with r.client() as c5:
                if c5.banner.code == 220:
                    ok = True
                    c5.expect("QUIT", 221)
                    break
            time.sleep(0.1)
        assert ok, "no slot freed after a client left"
    finally:
        for c in held:
            c.close()


@pytest.mark.parametrize("hops,ok", [(3, True), (4, False)])
def test_hopcount(relay, hops, ok):
    r = relay("hopcount_limit = 3")
    hdrs = b"".join(b"Received: from h%d.example by h%d.example; "
                    b"Mon, 1 Jan 2024 00:00:0%d +0000\r\n" % (i, i + 1, i)
                    for i in range(hops))
    with r.client() as c:
        c.ehlo()
        c.expect("MAIL FROM:<b@example.org>", 250)
        c.expect("RCPT TO:<a@example.com>", 250)
        c.expect("DATA", 354)
        c.send(hdrs + b"From: b@example.org\r\nSubject: loop\r\n\r\nbody\r\n.\r\n")
        rr = c.reply()
        if ok:
            queued_id(rr)
        else:
            check(rr, 554, "5.4.6", "%d Received fields" % hops)
            good_message(c)
    assert len(r.queue_list()) == 1


def test_pipelining(relay):
    r = relay()
    with r.client() as c:
        c.send(b"EHLO pipe.test\r\n" + MAIL +
               b"RCPT TO:<a@example.com>\r\nRCPT TO:<c@example.com>\r\n"
               b"DATA\r\n")
        rs = c.replies(5)
        assert [x.code for x in rs] == [250, 250, 250, 250, 354], rs
        assert rs[0].lines[0] == b"250-relay.test", rs[0]
        check(rs[1], 250, "2.1.0")
        check(rs[2], 250, "2.1.5")
        check(rs[3], 250, "2.1.5")
        # End of data and the next transaction in one write.
        c.send(b"From: b@example.org\r\nSubject: p1\r\n\r\none\r\n.\r\n" +
               b"MAIL FROM:<d@example.org>\r\n" + RCPT + b"DATA\r\n")
        rs = c.replies(4)
        id1 = queued_id(rs[0])
        assert [x.code for x in rs[1:]] == [250, 250, 354], rs
        # End of data, RSET, NOOP, QUIT in one write.
        c.send(b"From: b@example.org\r\nSubject: p2\r\n\r\ntwo\r\n.\r\nRSET\r\nNOOP\r\nQUIT\r\n")
        rs = c.replies(4)
        id2 = queued_id(rs[0])
        assert [x.code for x in rs[1:]] == [250, 250, 221], rs
        assert c.closed(3.0)
    q = {m["id"]: m for m in r.queue_list()}
    assert set(q) == {id1, id2}
    assert q[id1]["recipients"] == ["a@example.com", "c@example.com"]
    assert q[id2]["sender"] == "d@example.org"
    assert r.queue_cat(id1).endswith(b"\r\n\r\none\r\n")
    assert r.queue_cat(id2).endswith(b"\r\n\r\ntwo\r\n")


def test_pipelined_errors_in_order(relay):
    """A failing command in a pipelined group is answered in its place."""
    r = relay()
    with r.client() as c:
        c.ehlo()
        c.send(MAIL + b"RCPT TO:<bad@>\r\n" + RCPT + b"NOOP\r\nDATA\r\n")
        rs = c.replies(5)
        assert [x.code for x in rs] == [250, 501, 250, 250, 354], rs
        c.send(b"From: b@example.org\r\nSubject: x\r\n\r\nx\r\n.\r\n")
        queued_id(c.reply())


def test_pipelined_many(relay):
    """Many whole transactions in one write (every DATA waits for 354 in
    RFC 2920, but a server must cope with clients that don't)."""
    r = relay()
    n = 50
    blob = b"EHLO many.test\r\n"
    for i in range(n):
        blob += (MAIL + RCPT + b"DATA\r\nFrom: b@example.org\r\nSubject: m%d\r\n\r\nbody %d\r\n"
                 b".\r\n" % (i, i))
    blob += b"QUIT\r\n"
    with r.client() as c:
        c.send(blob)
        rs = c.replies(1 + 4 * n + 1)
        ids = [queued_id(rs[4 + 4 * i]) for i in range(n)]
        assert rs[-1].code == 221
    assert r.queue_ids() == set(ids)
    assert r.queue_cat(ids[7]).endswith(b"\r\n\r\nbody 7\r\n")
