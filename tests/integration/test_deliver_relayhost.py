"""Delivery through relayhost: every message reaches Postfix's smtp-sink
at [127.0.0.10]:PORT with its body intact and a DKIM signature that
dkimpy verifies, and the delivery log has one well-formed "delivered"
record per recipient.
"""
import pytest

import peers
from waxtest import free_port

dkim = pytest.importorskip("dkim", reason="python3-dkim is not installed")

LOG_KEYS = {"time", "queue_id", "message_id", "sender", "recipient",
            "destination", "mx", "ip", "tls_version", "tls_cipher",
            "reply", "status", "attempt", "delay"}
N = 20


def test_relayhost_delivers_signed_intact(relay, sink, tmp_path):
    s = sink("127.0.0.10", free_port(host="127.0.0.10"))
    sign_lines, dnsfunc = peers.dkim_tables(tmp_path)
    r = relay(*sign_lines, *peers.delivery_lines(),
              "relayhost = " + s.endpoint,
              "smtp_helo_name = out.waxseal.test")

    sent = {}
    msgs = []
    for i in range(N):
        m, mid = peers.make_message("news@news.test", "reader%d@dest.test"
                                    % i, "issue %d" % i)
        sent[mid] = m
        msgs.append(m)
    ids = []
    for i, m in enumerate(msgs):
        ids += peers.submit(r, "news@news.test", ["reader%d@dest.test" % i],
                            [m])

    got = s.wait_messages(N, timeout=60)
    assert len(got) == N, got
    seen = set()
    for m in got:
        mid = m.header("Message-ID")
        assert mid in sent, "unknown message %r" % m.data[:300]
        seen.add(mid)
        assert peers.body_of(m.data) == peers.body_of(sent[mid])
        assert m.header("DKIM-Signature") is not None, m.data[:500]
        assert dkim.verify(m.data, dnsfunc=dnsfunc), \
            "DKIM signature does not verify:\n%r" % m.data
        assert m.sender == "news@news.test"
        assert m.helo == "out.waxseal.test"
    assert seen == set(sent)

    recs = r.wait_deliveries(N, timeout=30, status="delivered")
    assert {d["queue_id"] for d in recs} == set(ids)
    for d in recs:
        assert LOG_KEYS <= set(d), "missing %s in %r" % (
            LOG_KEYS - set(d), d)
        assert d["sender"] == "news@news.test"
        assert d["recipient"].startswith("reader")
        assert d["message_id"].strip("<>") in {k.strip("<>") for k in sent}
        assert d["ip"] == "127.0.0.10", d
        assert str(d["reply"]).startswith("250"), d
        assert d["attempt"] == 1, d
        assert float(d["delay"]) >= 0, d
        assert d["destination"], d

    # Delivered messages leave the queue.
    peers.wait_for(lambda: not (set(ids) & r.queue_ids()), 15,
                   "the delivered messages to leave the queue")


def test_held_until_flush(relay, sink):
    """defer_transports = smtp (the tests' base setting) holds delivery
    until `waxseal queue flush`."""
    s = sink("127.0.0.10", free_port(host="127.0.0.10"))
    r = relay("relayhost = " + s.endpoint)
    m, mid = peers.make_message("news@news.test", "a@dest.test", "held")
    qid, = peers.submit(r, "news@news.test", ["a@dest.test"], [m])
    import time
    time.sleep(2)
    assert s.messages() == [], "delivered although defer_transports = smtp"
    assert qid in r.queue_ids()
    f = r.queue_ctl("flush")
    assert f.returncode == 0, f.stderr
    got = s.wait_messages(1, timeout=30)
    assert got[0].header("Message-ID") == mid
