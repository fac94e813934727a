"""kill -9 during delivery, then restart on the same spool: every
accepted message reaches the destination at least once (duplicates are
allowed, loss is not)."""
import re

import peers
from waxtest import free_port

N = 40


def test_kill9_during_delivery_loses_nothing(relay, sink):
    # The sink waits before answering DATA, so deliveries are in flight
    # when the daemon dies.
    s = sink("127.0.0.60", free_port(host="127.0.0.60"), data_delay=1)
    r = relay(*peers.delivery_lines(), "relayhost = " + s.endpoint)
    marks = set()
    msgs = []
    for i in range(N):
        mark = "END-OF-MESSAGE-%03d" % i
        marks.add(mark)
        msgs.append(peers.make_message(
            "news@news.test", "a@dest.test", "crash %d" % i,
            body=("Body %d.\r\n%s\r\n" % (i, mark)).encode())[0])
    peers.submit(r, "news@news.test", ["a@dest.test"], msgs)
    s.wait_messages(3, timeout=60)
    r.kill9()

    r.start()

    def delivered():
        got = set()
        for m in s.messages():
            got.update(re.findall(rb"END-OF-MESSAGE-\d{3}", m.data))
        return {g.decode() for g in got}
    try:
        peers.wait_for(lambda: delivered() >= marks, 120,
                       "every message at the sink", interval=0.5)
    except AssertionError:
        missing = sorted(marks - delivered())
        raise AssertionError("lost after kill -9: %s" % missing)
    peers.wait_for(lambda: not r.queue_ids(), 30, "an empty queue")
