"""CHUNKING (RFC 3030) on the delivery side, against a real Postfix: its
smtpd offers PIPELINING and CHUNKING, so waxseal sends each message as
one BDAT ... LAST with the envelope, and Postfix relays what it got to
smtp-sink, where dkimpy verifies the signature: the octets crossed BDAT
exactly as signed. Postfix's own log counts the commands it received.
smtp-sink offers no CHUNKING, so every other delivery test covers DATA."""
import re

import pytest

import peers
from waxtest import free_port

dkim = pytest.importorskip("dkim", reason="python3-dkim is not installed")


def disconnect_counts(pf):
    """The command counts of Postfix's smtpd "disconnect" lines for
    connections from 127.0.0.1 (waxseal), e.g. {"bdat": 2, ...}."""
    out = []
    for ln in pf.log().splitlines():
        if "disconnect from" not in ln or "[127.0.0.1]" not in ln:
            continue
        out.append({k: int(v) for k, v in re.findall(r" (\w+)=(\d+)", ln)})
    return out


def test_bdat_through_postfix(relay, sink, postfix, tmp_path):
    s = sink("127.0.0.72", free_port(host="127.0.0.72"))
    pf = postfix(s.endpoint)
    sign_lines, dnsfunc = peers.dkim_tables(tmp_path)
    r = relay(*sign_lines, *peers.delivery_lines(),
              "relayhost = [127.0.0.1]:%d" % pf.port)

    # Dots at line starts: what BDAT sends is not stuffed.
    bodies = [b"First.\r\n.a line with a dot\r\n..two\r\n.\r\nend\r\n",
              b"Second, one line\r\n"]
    with r.client() as c:
        c.ehlo()
        for i, body in enumerate(bodies):
            c.send_message(
                "news@news.test", ["reader%d@dest.test" % i],
                b"From: <news@news.test>\r\nTo: <reader@dest.test>\r\n"
                b"Subject: chunk %d\r\nMessage-ID: <bdat.%d@news.test>\r\n"
                b"\r\n" % (i, i) + body)
        c.cmd("QUIT")

    try:
        got = s.wait_messages(2, timeout=60)
    except AssertionError:
        raise AssertionError("nothing reached the sink; Postfix log:\n%s\n"
                             "waxseal log:\n%s" % (pf.log(), r.run_log()))
    by_id = {m.header("Message-ID"): m for m in got}
    first = by_id["<bdat.0@news.test>"]
    second = by_id["<bdat.1@news.test>"]
    assert b"\r\n.a line with a dot\r\n..two\r\n.\r\nend\r\n" in first.data
    assert second.data.endswith(b"\r\n\r\nSecond, one line\r\n")
    for m in (first, second):
        assert b"by postfix.test (Postfix)" in m.data, "not via Postfix"
        assert dkim.verify(m.data, dnsfunc=dnsfunc), m.data
    r.wait_deliveries(2, timeout=15, status="delivered")

    # Postfix counts BDAT and no DATA once waxseal closes the connection.
    r.stop()
    peers.wait_for(lambda: disconnect_counts(pf), 15,
                   "Postfix to log waxseal's disconnect")
    counts = disconnect_counts(pf)
    assert sum(c.get("bdat", 0) for c in counts) == 2, counts
    assert sum(c.get("data", 0) for c in counts) == 0, counts


def test_bdat_refused_then_next_message(relay, sink, postfix, tmp_path):
    """Postfix refuses a message too big at MAIL (SIZE); the pipelined
    RCPT and BDAT are refused in turn. That recipient bounces, and the
    next message still goes through on a clean transaction."""
    s = sink("127.0.0.73", free_port(host="127.0.0.73"))
    pf = postfix(s.endpoint, extra=["message_size_limit = 4000"])
    sign_lines, dnsfunc = peers.dkim_tables(tmp_path)
    r = relay(*sign_lines, *peers.delivery_lines(),
              "relayhost = [127.0.0.1]:%d" % pf.port)

    head = (b"From: <news@news.test>\r\nTo: <reader@dest.test>\r\n"
            b"Subject: %s\r\n\r\n")
    with r.client() as c:
        c.ehlo()
        c.send_message("news@news.test", ["big@dest.test"],
                       head % b"big" + b"x" * 70 + b"\r\n" * 1 +
                       (b"y" * 70 + b"\r\n") * 80)
    bounced = r.wait_deliveries(1, timeout=30, recipient="big@dest.test")
    assert bounced[0]["status"] == "bounced", bounced
    assert bounced[0]["reply"].startswith("552"), bounced

    with r.client() as c:
        c.ehlo()
        c.send_message("news@news.test", ["small@dest.test"],
                       head % b"small" + b"short\r\n")
    r.wait_deliveries(1, timeout=30, recipient="small@dest.test",
                      status="delivered")
    peers.wait_for(lambda: [m for m in s.messages()
                            if m.rcpts == ["small@dest.test"]], 30,
                   "the small message at the sink")
    small = [m for m in s.messages() if m.rcpts == ["small@dest.test"]]
    assert len(small) == 1
    assert dkim.verify(small[0].data, dnsfunc=dnsfunc)

    # Nothing of the big one got through; its bounce may have.
    for m in s.messages():
        assert m.rcpts in (["small@dest.test"], ["news@news.test"]), m
