"""Temporary and permanent failures: 4xx defers and retries after
minimal_backoff_time; 5xx bounces with one RFC 3464 DSN to the sender,
delivered like any mail to the sink of the sender's domain; a message
from <> never gets one; maximal_queue_lifetime expires a message that
keeps failing."""
import time

import peers
from waxtest import free_port


def routes(tmp_path, rcpt_sink, sender_sink):
    tm = tmp_path / "transport"
    tm.write_text("dest.test %s\nnews.test %s\n"
                  % (rcpt_sink.endpoint, sender_sink.endpoint))
    return "transport_maps = %s" % tm


def test_4xx_defers_then_delivers(relay, sink, tmp_path):
    dest = sink("127.0.0.20", free_port(host="127.0.0.20"), soft=("RCPT",))
    home = sink("127.0.0.21", free_port(host="127.0.0.21"))
    r = relay(*peers.delivery_lines(backoff="1s"),
              routes(tmp_path, dest, home))
    m, mid = peers.make_message("news@news.test", "a@dest.test", "retry")
    qid, = peers.submit(r, "news@news.test", ["a@dest.test"], [m])

    d = r.wait_deliveries(1, timeout=30, status="deferred")[0]
    assert d["queue_id"] == qid and d["recipient"] == "a@dest.test"
    assert str(d["reply"]).startswith("4"), d
    assert qid in r.queue_ids()
    assert dest.messages() == []

    dest.restart(soft=())
    got = dest.wait_messages(1, timeout=30)
    assert got[0].header("Message-ID") == mid
    d = r.wait_deliveries(1, timeout=15, status="delivered")[0]
    assert d["queue_id"] == qid and d["attempt"] >= 2, d
    peers.wait_for(lambda: qid not in r.queue_ids(), 15,
                   "the message to leave the queue")
    assert home.messages() == [], "a DSN for a delivered message"


def test_5xx_bounces_with_dsn(relay, sink, tmp_path):
    dest = sink("127.0.0.22", free_port(host="127.0.0.22"), hard=("RCPT",),
                hard_reply="550 5.1.1 No such user here")
    home = sink("127.0.0.23", free_port(host="127.0.0.23"))
    r = relay(*peers.delivery_lines(), routes(tmp_path, dest, home))
    m, mid = peers.make_message("news@news.test", "gone@dest.test",
                                "bounce me")
    qid, = peers.submit(r, "news@news.test", ["gone@dest.test"], [m])

    d = r.wait_deliveries(1, timeout=30, status="bounced")[0]
    assert d["queue_id"] == qid and str(d["reply"]).startswith("550"), d
    dsn = home.wait_messages(1, timeout=30)[0]
    assert dsn.sender == "", "a DSN's envelope sender must be <>"
    assert dsn.rcpts == ["news@news.test"]
    rep = peers.parse_dsn(dsn.data)
    assert "text/rfc822-headers" in rep["types"], rep["types"]
    rc, = rep["recipients"]
    assert "gone@dest.test" in rc["final-recipient"], rc
    assert rc["status"].startswith("5."), rc
    assert rc["action"].lower() == "failed", rc
    assert "Subject: bounce me" in rep["headers"]
    assert mid in rep["headers"]
    peers.wait_for(lambda: qid not in r.queue_ids(), 15,
                   "the bounced message to leave the queue")
    time.sleep(1)
    assert len(home.messages()) == 1, "more than one DSN"


def test_no_dsn_for_null_sender(relay, sink, tmp_path):
    dest = sink("127.0.0.24", free_port(host="127.0.0.24"), hard=("RCPT",))
    home = sink("127.0.0.25", free_port(host="127.0.0.25"))
    r = relay(*peers.delivery_lines(), routes(tmp_path, dest, home))
    # A bounce someone else made, and a normal message after it: when the
    # second one's DSN has arrived, the first one's would have too.
    m1, _ = peers.make_message("mailer-daemon@news.test", "x@dest.test",
                               "a bounce")
    q1, = peers.submit(r, "", ["x@dest.test"], [m1])
    r.wait_deliveries(1, timeout=30, status="bounced", queue_id=q1)
    m2, _ = peers.make_message("news@news.test", "y@dest.test", "canary")
    q2, = peers.submit(r, "news@news.test", ["y@dest.test"], [m2])
    r.wait_deliveries(1, timeout=30, status="bounced", queue_id=q2)
    home.wait_messages(1, timeout=30)
    time.sleep(1)
    got = home.messages()
    assert len(got) == 1, "a DSN for a message from <>: %r" % got
    assert "y@dest.test" in peers.parse_dsn(got[0].data)["recipients"][0][
        "final-recipient"]


def test_queue_lifetime_expires(relay, sink, tmp_path):
    dest = sink("127.0.0.26", free_port(host="127.0.0.26"), soft=("RCPT",))
    home = sink("127.0.0.27", free_port(host="127.0.0.27"))
    r = relay(*peers.delivery_lines(backoff="1s"),
              routes(tmp_path, dest, home),
              "maximal_queue_lifetime = 2s")
    m, mid = peers.make_message("news@news.test", "slow@dest.test",
                                "too slow")
    qid, = peers.submit(r, "news@news.test", ["slow@dest.test"], [m])
    d = r.wait_deliveries(1, timeout=30, status="expired")[0]
    assert d["queue_id"] == qid and d["recipient"] == "slow@dest.test"
    dsn = home.wait_messages(1, timeout=30)[0]
    assert dsn.sender == "" and dsn.rcpts == ["news@news.test"]
    rep = peers.parse_dsn(dsn.data)
    rc, = rep["recipients"]
    assert "slow@dest.test" in rc["final-recipient"]
    assert rc["action"].lower() == "failed", rc
    assert mid in rep["headers"]
    peers.wait_for(lambda: qid not in r.queue_ids(), 15,
                   "the expired message to leave the queue")


def test_schedule_survives_restart(relay, sink, tmp_path):
    """A deferred message keeps its attempt count and next attempt time
    across a restart: it is not tried again before its time."""
    dest = sink("127.0.0.26", free_port(host="127.0.0.26"), soft=("RCPT",))
    home = sink("127.0.0.27", free_port(host="127.0.0.27"))
    r = relay(*peers.delivery_lines(backoff="1h"),
              routes(tmp_path, dest, home))
    m, _ = peers.make_message("news@news.test", "a@dest.test", "later")
    qid, = peers.submit(r, "news@news.test", ["a@dest.test"], [m])
    r.wait_deliveries(1, timeout=30, status="deferred")

    def state():
        out = r.queue_ctl("show", qid).stdout
        return dict(line.split(": ", 1) for line in out.split("\n\n")[0]
                    .splitlines() if ": " in line)

    peers.wait_for(lambda: state().get("attempts") == "1", 10,
                   "the attempt to be recorded")
    before = state()
    assert before["state"] == "deferred", before
    assert int(before["next_attempt_ms"]) > time.time() * 1000 + 3000e3

    r.stop()
    r.start()
    time.sleep(2)
    after = state()
    assert after["attempts"] == "1", after
    assert after["next_attempt_ms"] == before["next_attempt_ms"], after
    assert len(r.deliveries()) == 1, "tried again before its time"


def test_smtputf8_bounce_is_rfc6533(relay, sink, aiosink, tmp_path):
    """An SMTPUTF8 message (RFC 6531) from a UTF-8 sender, for a server
    that does not offer SMTPUTF8 (smtp-sink), bounces with 5.6.7: the
    DSN goes out with SMTPUTF8 and BODY=8BITMIME to a server that offers
    them (aiosmtpd), and is RFC 6533's: message/global-delivery-status
    with a utf-8 Final-Recipient, message/global-headers."""
    import email
    import email.parser
    import email.policy
    import smtplib

    dest = sink("127.0.0.24", free_port(host="127.0.0.24"))
    home = aiosink("127.0.0.25", free_port(host="127.0.0.25"), smtputf8=True)
    sender8 = "nachrichten-\u00e4@news.test"
    rcpt8 = "j\u00f6rg@dest.test"
    r = relay(*peers.delivery_lines(), routes(tmp_path, dest, home))

    msg = ("From: %s\r\nTo: %s\r\nSubject: Gr\u00fc\u00dfe\r\n"
           "Message-ID: <utf8bounce@news.test>\r\n\r\nhallo\r\n"
           % (sender8, rcpt8)).encode()
    with smtplib.SMTP(r.host, r.port, timeout=30) as s:
        s.ehlo("client.test")
        code, resp = s.mail(sender8, ["SMTPUTF8", "BODY=8BITMIME"])
        assert code == 250, resp
        code, resp = s.rcpt(rcpt8)
        assert code == 250, resp
        code, resp = s.data(msg)
        assert code == 250, resp

    r.wait_deliveries(1, timeout=30, status="bounced")
    dsn = home.wait_messages(1, timeout=30)[0]
    # aiosmtpd writes the null sender as "<>".
    assert dsn.sender in ("", "<>") and dsn.rcpts == [sender8], dsn
    opts = [o.upper() for o in dsn.mail_options]
    assert "SMTPUTF8" in opts and "BODY=8BITMIME" in opts, opts

    top = email.message_from_bytes(dsn.data, policy=email.policy.default)
    assert top["To"] == sender8
    types = [p.get_content_type() for p in top.get_payload()]
    assert types == ["text/plain", "message/global-delivery-status",
                     "message/global-headers"], types
    # The report's blocks, read as header sections.
    part = dsn.data.split(b"\r\n--" + top.get_boundary().encode())[2]
    body = part.split(b"\r\n\r\n", 1)[1]
    parser = email.parser.BytesHeaderParser(
        policy=email.policy.default.clone(utf8=True))
    blocks = [parser.parsebytes(b + b"\r\n")
              for b in body.split(b"\r\n\r\n") if b.strip()]
    assert str(blocks[1]["Final-Recipient"]) == "utf-8; " + rcpt8
    # smtp-sink does not offer SMTPUTF8: the message is not sent there
    # (RFC 6531 section 3.4) and the DSN says why.
    assert str(blocks[1]["Status"]) == "5.6.7", blocks[1]
    part3 = dsn.data.split(b"\r\n--" + top.get_boundary().encode())[3]
    assert "Subject: Gr\u00fc\u00dfe".encode() in part3
