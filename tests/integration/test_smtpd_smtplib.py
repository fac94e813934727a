"""waxseal's SMTP server driven by Python's smtplib: extensions, a whole
transaction, what is stored, STARTTLS (RFC 3207), SMTPUTF8 (RFC 6531) and,
by raw socket, CHUNKING (RFC 3030)."""

import re
import smtplib
import ssl
from email.message import EmailMessage

import pytest

import waxtest
from waxtest import check, queued_id, split_stored, header_fields


def tls_lines(cert, key, level="may"):
    return ("smtpd_tls_cert_file = %s" % cert,
            "smtpd_tls_key_file = %s" % key,
            "smtpd_tls_security_level = %s" % level)


def no_verify():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def smtp(r, **kw):
    return smtplib.SMTP(r.host, r.port, local_hostname="client.test",
                        timeout=10, **kw)


def transact(s, sender, rcpts, msg, mail_options=()):
    """MAIL, RCPT..., DATA with smtplib's own commands; the queue ID."""
    code, resp = s.mail(sender, list(mail_options))
    assert code == 250, (code, resp)
    for rc in rcpts:
        code, resp = s.rcpt(rc)
        assert code == 250, (rc, code, resp)
    code, resp = s.data(msg)
    assert code == 250, (code, resp)
    m = re.match(rb"2\.0\.0 Ok: queued as ([0-9A-F]{16})$", resp)
    assert m, resp
    return m.group(1).decode()


HDRS = (b"From: Sender <b@example.org>\r\n"
        b"To: a@example.com\r\n"
        b"Subject: integration test\r\n")
BODY = (b"first line\r\n"
        b".a line that starts with a dot\r\n"
        b"..two dots\r\n"
        b"\r\n"
        b"tab\tand trailing space \r\n"
        b"last line\r\n")


def test_ehlo_extensions(relay):
    r = relay("message_size_limit = 123456")
    with smtp(r) as s:
        code, resp = s.ehlo()
        assert code == 250
        lines = resp.decode().split("\n")
        assert lines[0] == "relay.test", lines
        ext = lines[1:]
        for want in ("PIPELINING", "SIZE 123456", "8BITMIME",
                     "ENHANCEDSTATUSCODES", "SMTPUTF8", "CHUNKING"):
            assert want in ext, (want, ext)
        assert "STARTTLS" not in ext, ext
        code, _ = s.docmd("STARTTLS")
        assert code == 502


def test_banner(relay):
    r = relay()
    with r.client() as c:
        check(c.banner, 220)
        assert c.banner.lines[0].startswith(b"220 relay.test"), c.banner


def test_send_and_store(relay):
    r = relay()
    with smtp(r) as s:
        s.ehlo()
        qid = transact(s, "b@example.org", ["a@example.com"],
                       HDRS + b"\r\n" + BODY)
    r.wait_log(r"info %s queued from=<b@example.org> nrcpt=1 " % qid)

    q = {m["id"]: m for m in r.queue_list()}
    assert list(q) == [qid], q
    assert q[qid]["sender"] == "b@example.org"
    assert q[qid]["recipients"] == ["a@example.com"]
    assert q[qid]["state"] == "queued"

    stored = r.queue_cat(qid)
    before, _, added, body = split_stored(stored, HDRS)
    assert body == BODY, body
    assert before.startswith(b"Received: from client.test ("), before
    assert re.search(rb"by relay\.test \(waxseal\) with ESMTP(?=[;\r])", before), \
        before
    assert b"for <a@example.com>" in before, before
    assert q[qid]["size"] == len(stored), (q[qid], len(stored))

    # Message-ID and Date were missing: both added, after the client's
    # fields, once each; the logged msgid is the one stored.
    names = [n.lower() for n, _ in header_fields(added)]
    assert sorted(names) == ["date", "message-id"], added
    mid = re.search(rb"Message-ID: (<[^>]+@relay\.test>)\r\n", added)
    assert mid, added
    assert ("msgid=%s" % mid.group(1).decode()) in r.log()
    assert re.search(rb"Date: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d "
                     rb"[+-]\d{4}\r\n", added), added


def test_message_id_and_date_kept(relay):
    r = relay()
    hdrs = (HDRS + b"Message-ID: <given.1@example.org>\r\n"
            b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n")
    with smtp(r) as s:
        s.ehlo()
        qid = transact(s, "b@example.org", ["a@example.com"],
                       hdrs + b"\r\n" + BODY)
    stored = r.queue_cat(qid)
    before, _, added, body = split_stored(stored, hdrs)
    assert added == b"", added
    assert body == BODY
    assert stored.lower().count(b"\r\nmessage-id:") == 1, stored
    assert stored.lower().count(b"\r\ndate:") == 1, stored
    assert "msgid=<given.1@example.org>" in r.log()


def test_only_date_missing(relay):
    r = relay()
    hdrs = HDRS + b"Message-ID: <given.2@example.org>\r\n"
    with smtp(r) as s:
        s.ehlo()
        qid = transact(s, "b@example.org", ["a@example.com"],
                       hdrs + b"\r\n" + BODY)
    _, _, added, body = split_stored(r.queue_cat(qid), hdrs)
    assert [n.lower() for n, _ in header_fields(added)] == ["date"], added
    assert body == BODY


def test_multiple_recipients_and_8bit(relay):
    r = relay()
    rcpts = ["r%d@example.com" % i for i in range(7)]
    body = "Grüße, ½ € — 8-bit body\r\n".encode("utf-8")
    with smtp(r) as s:
        s.ehlo()
        qid = transact(s, "b@example.org", rcpts, HDRS + b"\r\n" + body,
                       mail_options=["BODY=8BITMIME"])
    q = {m["id"]: m for m in r.queue_list()}
    assert q[qid]["recipients"] == rcpts
    stored = r.queue_cat(qid)
    assert split_stored(stored, HDRS)[3] == body
    assert b"for <" not in stored.split(HDRS)[0], stored


def test_two_messages_one_session(relay):
    r = relay()
    ids = []
    with smtp(r) as s:
        s.ehlo()
        for i in range(3):
            ids.append(transact(s, "b@example.org", ["a@example.com"],
                                HDRS + b"\r\nmessage %d\r\n" % i))
    assert len(set(ids)) == 3, ids
    listed = [m["id"] for m in r.queue_list()]
    assert sorted(listed) == sorted(ids)
    for i, qid in enumerate(ids):
        assert r.queue_cat(qid).endswith(b"\r\n\r\nmessage %d\r\n" % i)


def test_other_commands(relay):
    r = relay()
    with smtp(r) as s:
        s.ehlo()
        assert s.mail("b@example.org")[0] == 250
        assert s.rcpt("a@example.com")[0] == 250
        code, resp = s.rset()
        assert (code, resp[:5]) == (250, b"2.0.0"), resp
        # RSET forgot the transaction.
        code, resp = s.docmd("DATA")
        assert code == 503, (code, resp)
        code, resp = s.noop()
        assert code == 250 and resp.startswith(b"2.0.0"), resp
        code, resp = s.verify("a@example.com")
        assert code == 252 and resp.startswith(b"2.5.2"), resp
        code, resp = s.docmd("HELP")
        assert code == 214, (code, resp)
        code, resp = s.docmd("XYZZY", "plugh")
        assert code == 500 and resp.startswith(b"5.5.2"), (code, resp)
        code, resp = s.docmd("EXPN", "list")
        assert code == 502, (code, resp)
        code, resp = s.docmd("QUIT")
        assert code == 221 and resp.startswith(b"2.0.0"), (code, resp)
        s.close()
    assert r.queue_list() == []


def test_helo_gives_smtp(relay):
    r = relay()
    with smtp(r) as s:
        code, resp = s.helo("old.client.test")
        assert code == 250 and resp == b"relay.test", resp
        qid = transact(s, "b@example.org", ["a@example.com"],
                       HDRS + b"\r\n" + BODY)
    stored = r.queue_cat(qid)
    assert stored.startswith(b"Received: from old.client.test ("), stored
    assert re.search(rb"by relay\.test \(waxseal\) with SMTP(?=[;\r])", stored), \
        stored


def test_starttls(relay, tls_cert):
    r = relay(*tls_lines(*tls_cert))
    with smtp(r) as s:
        s.ehlo()
        assert s.has_extn("starttls")
        code, resp = s.starttls(context=no_verify())
        assert code == 220, resp
        version, cipher = s.sock.version(), s.sock.cipher()[0]
        code, resp = s.ehlo()
        assert code == 250
        assert not s.has_extn("starttls"), resp
        assert s.has_extn("pipelining") and s.has_extn("chunking")
        # A second STARTTLS inside TLS is refused.
        code, resp = s.docmd("STARTTLS")
        assert code in (503, 554), (code, resp)
        qid = transact(s, "b@example.org", ["a@example.com"],
                       HDRS + b"\r\n" + BODY)
    stored = r.queue_cat(qid)
    before, _, _, body = split_stored(stored, HDRS)
    assert body == BODY
    assert b"with ESMTPS" in before, before
    assert version.encode() in before, (version, before)
    assert cipher.encode() in before, (cipher, before)


def test_starttls_required(relay, tls_cert):
    r = relay(*tls_lines(*tls_cert, level="encrypt"))
    with smtp(r) as s:
        s.ehlo()
        assert s.has_extn("starttls")
        code, resp = s.mail("b@example.org")
        assert code == 530 and resp.startswith(b"5.7.0"), (code, resp)
        s.starttls(context=no_verify())
        s.ehlo()
        qid = transact(s, "b@example.org", ["a@example.com"],
                       HDRS + b"\r\n" + BODY)
    assert r.queue_ids() == {qid}


def test_smtputf8(relay):
    r = relay()
    msg = EmailMessage()
    msg["From"] = "Jörg <jörg@exämple.org>"
    msg["To"] = "usér@exämple.com"
    msg["Subject"] = "ünïcödé"
    msg.set_content("Hällo\n")
    with smtp(r) as s:
        s.ehlo()
        assert s.has_extn("smtputf8")
        refused = s.send_message(msg)
        assert refused == {}
    q = r.queue_list()
    assert len(q) == 1, q
    assert q[0]["sender"] == "jörg@exämple.org"
    assert q[0]["recipients"] == ["usér@exämple.com"]
    stored = r.queue_cat(q[0]["id"])
    assert re.search(rb"by relay\.test \(waxseal\) with UTF8SMTP",
                     stored), stored
    assert "Subject: ünïcödé".encode() in stored


def test_utf8_address_without_smtputf8(relay):
    r = relay()
    with r.client() as c:
        c.ehlo()
        rr = c.cmd("MAIL FROM:<jörg@exämple.org>".encode())
        check(rr, 553, "5.6.7", "MAIL with UTF-8, no SMTPUTF8")
        c.expect("MAIL FROM:<b@example.org>", 250)
        rr = c.cmd("RCPT TO:<usér@exämple.com>".encode())
        check(rr, 553, "5.6.7", "RCPT with UTF-8, no SMTPUTF8")
        c.expect("QUIT", 221)
    assert r.queue_list() == []


BDAT_MSG = (b"From: b@example.org\r\nSubject: chunked\r\n\r\n"
            b".a dot that BDAT must keep\r\n"
            b"..and two\r\n"
            b"last\r\n")


def test_bdat(relay):
    r = relay()
    with r.client() as c:
        rr = c.ehlo()
        assert b"250 CHUNKING" in rr.lines or b"250-CHUNKING" in rr.lines
        c.expect("MAIL FROM:<b@example.org>", 250)
        c.expect("RCPT TO:<a@example.com>", 250)
        first, rest = BDAT_MSG[:10], BDAT_MSG[10:]
        c.send(b"BDAT 10\r\n" + first)
        check(c.reply(), 250, None, "BDAT 10")
        c.send(b"BDAT %d\r\n" % len(rest) + rest)
        check(c.reply(), 250, None, "BDAT rest")
        c.send(b"BDAT 0 LAST\r\n")
        qid = queued_id(c.reply())
        c.expect("QUIT", 221)
    stored = r.queue_cat(qid)
    hdrs, body = BDAT_MSG.split(b"\r\n\r\n", 1)
    _, _, _, got = split_stored(stored, hdrs + b"\r\n")
    assert got == body, stored


def test_bdat_pipelined(relay):
    """RFC 3030 lets BDAT commands and their chunks be pipelined: one
    write, the replies in order."""
    r = relay()
    with r.client() as c:
        c.ehlo()
        a, b = BDAT_MSG[:7], BDAT_MSG[7:]
        c.send(b"MAIL FROM:<b@example.org>\r\nRCPT TO:<a@example.com>\r\n"
               b"BDAT %d\r\n%sBDAT %d LAST\r\n%s"
               b"MAIL FROM:<c@example.org>\r\nRCPT TO:<a@example.com>\r\n"
               b"BDAT %d LAST\r\n%sQUIT\r\n"
               % (len(a), a, len(b), b, len(BDAT_MSG), BDAT_MSG))
        rs = c.replies(8)
        assert [x.code for x in rs] == [250] * 7 + [221], rs
        id1, id2 = queued_id(rs[3]), queued_id(rs[6])
    q = {m["id"]: m for m in r.queue_list()}
    assert set(q) == {id1, id2}
    assert q[id2]["sender"] == "c@example.org"
    for qid in (id1, id2):
        assert r.queue_cat(qid).endswith(b"\r\n\r\n" +
                                         BDAT_MSG.split(b"\r\n\r\n")[1])
