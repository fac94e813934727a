"""SMTP smuggling: no line end other than <CR><LF>.<CR><LF> may end a
message (RFC 5321 section 4.1.1.4), so nothing a client puts inside its
message can become a second transaction; and STARTTLS command injection
(plaintext pipelined after STARTTLS is not a command, RFC 3207 section
4.2)."""

import pytest

from waxtest import check, queued_id

SEQS = {
    "LF.LF": b"\n.\n",
    "LF.CRLF": b"\n.\r\n",
    "CRLF.LF": b"\r\n.\n",
    "CR.CR": b"\r.\r",
    "CRLF.CRCRLF": b"\r\n.\r\r\n",
    "CRLF.CR": b"\r\n.\r",
}

SMUGGLED = (b"MAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\nDATA\r\n"
            b"From: evil@x\r\nSubject: smuggled\r\n\r\nevil\r\n")


def replies_until_quit(c, limit=10):
    out = []
    for _ in range(limit):
        rr = c.reply()
        out.append(rr)
        if rr.code == 221:
            return out
    raise AssertionError("no 221 in %r" % out)


def smuggle(c, seq):
    c.ehlo()
    c.expect("MAIL FROM:<b@example.org>", 250)
    c.expect("RCPT TO:<a@example.com>", 250)
    c.expect("DATA", 354)
    c.send(b"From: b@example.org\r\nSubject: t\r\n\r\nbody" + seq + SMUGGLED + b"\r\n.\r\n")
    return c.reply()


@pytest.mark.parametrize("name", list(SEQS))
def test_smuggling_normalize(relay, name):
    r = relay()                         # smtpd_forbid_bare_newline default
    with r.client() as c:
        qid = queued_id(smuggle(c, SEQS[name]))
        # Nothing else was a command: the next reply is the QUIT's.
        c.send(b"QUIT\r\n")
        rs = replies_until_quit(c)
        assert [x.code for x in rs] == [221], rs
    q = r.queue_list()
    assert [m["id"] for m in q] == [qid], q
    assert q[0]["sender"] == "b@example.org"
    assert q[0]["recipients"] == ["a@example.com"]
    stored = r.queue_cat(qid)
    # The would-be commands are content of the one message.
    assert b"MAIL FROM:<evil@x>" in stored, stored
    assert b"Subject: smuggled" in stored, stored
    assert stored.endswith(b"evil\r\n\r\n"), stored
    assert "from=<evil@x>" not in r.log()


@pytest.mark.parametrize("name", list(SEQS))
def test_smuggling_reject(relay, name):
    r = relay("smtpd_forbid_bare_newline = reject")
    with r.client() as c:
        check(smuggle(c, SEQS[name]), 550, "5.5.2", name)
        assert r.queue_list() == []
        # Still in sync: a good transaction right after works.
        qid = c.send_message("b@example.org", ["a@example.com"],
                             b"From: b@example.org\r\nSubject: good\r\n\r\ngood\r\n")
        c.send(b"QUIT\r\n")
        assert [x.code for x in replies_until_quit(c)] == [221]
    q = r.queue_list()
    assert [m["id"] for m in q] == [qid], q
    assert b"evil" not in r.queue_cat(qid)


def test_bare_lf_in_commands_reject(relay):
    """Under reject, a command ended by a bare LF is refused too, and the
    session goes on."""
    r = relay("smtpd_forbid_bare_newline = reject")
    with r.client() as c:
        c.ehlo()
        c.send(b"MAIL FROM:<evil@x>\n")
        check(c.reply(), 500, "5.5.2")
        c.expect("MAIL FROM:<b@example.org>", 250)


@pytest.mark.parametrize("extra", [b"RSET\r\n",
                                   b"MAIL FROM:<evil@x>\r\n",
                                   b"NOOP\r\nNOOP\r\n"])
def test_starttls_injection(relay, tls_cert, extra):
    cert, key = tls_cert
    r = relay("smtpd_tls_cert_file = %s" % cert,
              "smtpd_tls_key_file = %s" % key)
    with r.client() as c:
        c.ehlo()
        c.send(b"STARTTLS\r\n" + extra)
        check(c.reply(), 220, "2.0.0", "STARTTLS")
        # Anything after 220 in plaintext would be an answer to the
        # injected commands.
        assert c.buf == b"", c.buf
        c.starttls()
        c.send(b"EHLO tls.test\r\n")
        rr = c.reply()
        assert rr.code == 250 and rr.lines[0] == b"250-relay.test", rr
        assert b"250-STARTTLS" not in rr.lines
        # A MAIL sent in plaintext did not open a transaction.
        c.expect("RCPT TO:<a@example.com>", 503)
        qid = c.send_message("b@example.org", ["a@example.com"],
                             b"From: b@example.org\r\nSubject: tls\r\n\r\ntls\r\n")
        c.expect("QUIT", 221)
    q = r.queue_list()
    assert [m["id"] for m in q] == [qid]
    assert q[0]["sender"] == "b@example.org"
