"""Queue control on a live daemon through its control socket:
list, show, hold, release, delete, flush and flush DOMAIN. Delivery
is held (defer_transports = smtp) so only flush sends mail."""
import time

import peers
from waxtest import free_port


def ok(r):
    assert r.returncode == 0, "exit %d: %s%s" % (r.returncode, r.stdout,
                                                 r.stderr)
    return r.stdout


def test_hold_release_delete_flush(relay, sink):
    s = sink("127.0.0.50", free_port(host="127.0.0.50"))
    r = relay("relayhost = " + s.endpoint, "minimal_backoff_time = 1s")
    msgs = [peers.make_message("news@news.test", "a@dest.test",
                               "ctl %d" % i) for i in range(3)]
    ids = [peers.submit(r, "news@news.test", ["a@dest.test"], [m])[0]
           for m, _ in msgs]
    listed = ok(r.queue_ctl("list"))
    for q in ids:
        assert q in listed, listed
    shown = ok(r.queue_ctl("show", ids[0]))
    assert "Subject: ctl 0" in shown and msgs[0][1] in shown, shown

    ok(r.queue_ctl("hold", ids[0]))
    ok(r.queue_ctl("delete", ids[1]))
    peers.wait_for(lambda: ids[1] not in r.queue_ids(), 10,
                   "the deleted message to leave the queue")
    ok(r.queue_ctl("flush"))
    got = s.wait_messages(1, timeout=30)
    time.sleep(1.5)
    got = s.messages()
    assert [m.header("Message-ID") for m in got] == [msgs[2][1]], got
    assert ids[0] in r.queue_ids(), "a held message left the queue"

    ok(r.queue_ctl("release", ids[0]))
    ok(r.queue_ctl("flush"))
    got = s.wait_messages(2, timeout=30)
    assert sorted(m.header("Message-ID") for m in got) == sorted(
        [msgs[0][1], msgs[2][1]])
    peers.wait_for(lambda: not r.queue_ids(), 15, "an empty queue")
    assert msgs[1][1] not in {m.header("Message-ID") for m in s.messages()}


def test_flush_one_domain(relay, sink, tmp_path):
    a = sink("127.0.0.51", free_port(host="127.0.0.51"))
    b = sink("127.0.0.52", free_port(host="127.0.0.52"))
    tm = tmp_path / "transport"
    tm.write_text("a.test %s\nb.test %s\n" % (a.endpoint, b.endpoint))
    r = relay("transport_maps = %s" % tm)
    ma, _ = peers.make_message("news@news.test", "x@a.test", "to a")
    mb, _ = peers.make_message("news@news.test", "x@b.test", "to b")
    qa, = peers.submit(r, "news@news.test", ["x@a.test"], [ma])
    qb, = peers.submit(r, "news@news.test", ["x@b.test"], [mb])
    ok(r.queue_ctl("flush", "a.test"))
    a.wait_messages(1, timeout=30)
    time.sleep(1.5)
    assert b.messages() == []
    assert qb in r.queue_ids() and qa not in r.queue_ids()
    ok(r.queue_ctl("flush", "b.test"))
    b.wait_messages(1, timeout=30)
