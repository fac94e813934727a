"""Per-destination limits, counted at the receiving end: the concurrency
window (destination_concurrency_limits), connection reuse, and
recipient grouping (default_destination_recipient_limit)."""
import peers
from waxtest import free_port


def limits_file(tmp_path, domain, endpoint, limit):
    """The limit under both names a destination may have (the domain,
    or the next hop): whichever waxseal uses, it finds the limit."""
    p = tmp_path / "limits"
    p.write_text("# destination limit\n%s %d\n%s %d\n"
                 % (domain, limit, endpoint, limit))
    return p


def test_concurrency_window(relay, aiosink, tmp_path):
    srv = aiosink("127.0.0.13", free_port(host="127.0.0.13"),
                  data_delay=0.2)
    tm = tmp_path / "transport"
    tm.write_text("busy.test %s\n" % srv.endpoint)
    lim = limits_file(tmp_path, "busy.test", srv.endpoint, 7)
    r = relay(*peers.delivery_lines(), "transport_maps = %s" % tm,
              "initial_destination_concurrency = 5",
              "default_destination_concurrency_limit = 20",
              "destination_concurrency_limits = %s" % lim)
    msgs = [peers.make_message("news@news.test", "r%d@busy.test" % i,
                               "window %d" % i)[0] for i in range(200)]
    peers.submit(r, "news@news.test", ["r@busy.test"], msgs)
    got = srv.wait_messages(200, timeout=120)
    assert len(got) == 200
    assert srv.peak <= 7, "%d sessions at once, limit 7" % srv.peak
    assert srv.peak > 1, "never more than one session: no parallelism"
    r.wait_deliveries(200, timeout=30, status="delivered")


def test_connection_reuse(relay, aiosink, tmp_path):
    srv = aiosink("127.0.0.14", free_port(host="127.0.0.14"))
    tm = tmp_path / "transport"
    tm.write_text("reuse.test %s\n" % srv.endpoint)
    lim = limits_file(tmp_path, "reuse.test", srv.endpoint, 5)
    r = relay(*peers.delivery_lines(), "transport_maps = %s" % tm,
              "destination_concurrency_limits = %s" % lim,
              "smtp_connection_cache_time_limit = 2s")
    msgs = [peers.make_message("news@news.test", "r@reuse.test",
                               "reuse %d" % i)[0] for i in range(100)]
    peers.submit(r, "news@news.test", ["r@reuse.test"], msgs)
    got = srv.wait_messages(100, timeout=60)
    assert len(got) == 100
    assert srv.connections <= 25, \
        "%d connections for 100 messages" % srv.connections
    sessions = {m.session for m in got}
    assert len(sessions) < len(got)


def test_recipient_grouping(relay, sink, tmp_path):
    s = sink("127.0.0.15", free_port(host="127.0.0.15"))
    tm = tmp_path / "transport"
    tm.write_text("many.test %s\n" % s.endpoint)
    r = relay(*peers.delivery_lines(), "transport_maps = %s" % tm,
              "default_destination_recipient_limit = 50",
              "smtpd_recipient_limit = 1000")
    rcpts = ["r%03d@many.test" % i for i in range(120)]
    m, mid = peers.make_message("news@news.test", "list@many.test",
                                "grouped")
    peers.submit(r, "news@news.test", rcpts, [m])
    got = s.wait_messages(3, timeout=60)
    import time
    time.sleep(1)       # a fourth transaction would be a failure
    got = s.messages()
    assert sorted(len(t.rcpts) for t in got) == [20, 50, 50], \
        [len(t.rcpts) for t in got]
    assert sorted(x for t in got for x in t.rcpts) == rcpts
    for t in got:
        assert t.header("Message-ID") == mid
        assert peers.body_of(t.data) == peers.body_of(m)
    r.wait_deliveries(120, timeout=30, status="delivered")
