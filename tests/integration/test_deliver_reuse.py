"""A reused connection after a failed transaction: when the only RCPT
of a transaction is refused with 4xx, the client must end the
transaction (RSET) before its next MAIL on the same connection, or the
server sees a nested MAIL and the next message bounces. waxseal-bench
sink refuses every second RCPT (tempfail=50, spread evenly)."""
import peers
from test_bench_blast import needs_bench
from test_bench_sink import Sink, free_port


@needs_bench
def test_no_nested_mail_after_refused_rcpt(relay, tmp_path):
    port = free_port("127.0.0.46")
    sink = Sink(tmp_path, ["127.0.0.46:%d,tempfail=50" % port])
    try:
        r = relay(*peers.delivery_lines(backoff="1s"),
                  "relayhost = [127.0.0.46]:%d" % port,
                  "initial_destination_concurrency = 1",
                  "default_destination_concurrency_limit = 1")
        msgs = [peers.make_message("news@news.test", "r%d@reuse.test" % i,
                                   "reuse %d" % i)[0] for i in range(10)]
        peers.submit(r, "news@news.test", ["r@reuse.test"], msgs)
        r.wait_deliveries(10, timeout=60, status="delivered")
        bounced = [d for d in r.deliveries() if d["status"] == "bounced"]
        assert bounced == [], bounced
        deferred = [d for d in r.deliveries() if d["status"] == "deferred"]
        assert deferred and all(d["reply"].startswith("451")
                                for d in deferred), deferred
    finally:
        rep = sink.stop()
    assert rep["replies"]["4xx"] >= 1
    assert rep["destinations"][0]["connections"] < 10 + len(deferred)
