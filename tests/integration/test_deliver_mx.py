"""MX routing through dnsmasq (dns_servers = 127.0.0.1:PORT): delivery
to port 25 of the MX hosts, by preference; a null MX (RFC 7505) and
NXDOMAIN bounce; a domain with no MX but an A record gets its mail
there (RFC 5321 section 5.1). Binding port 25 needs root.

Port 25 is fixed, so the two I/O backends, which ctest may run at the
same time, use sinks on different loopback nets: 127.0.0.x for io_uring,
127.0.1.x for libuv."""
import peers
from waxtest import io_backend


def ip(n):
    """Loopback address n of this backend's net."""
    return "127.0.%d.%d" % (1 if io_backend() == "libuv" else 0, n)


def test_mx_preference_falls_back(relay, sink, dns, root_only):
    # mx1 (preferred) has nothing listening on ip(30):25.
    mx2 = sink(ip(31), 25)
    d = dns(mx={"two.test": [(10, "mx1.two.test"), (20, "mx2.two.test")]},
            a={"mx1.two.test": ip(30), "mx2.two.test": ip(31)})
    r = relay(*peers.delivery_lines(dns_port=d.port))
    m, mid = peers.make_message("news@news.test", "a@two.test", "mx")
    qid, = peers.submit(r, "news@news.test", ["a@two.test"], [m])
    got = mx2.wait_messages(1, timeout=60)
    assert got[0].header("Message-ID") == mid
    assert got[0].rcpts == ["a@two.test"]
    rec = r.wait_deliveries(1, timeout=15, status="delivered")[0]
    assert rec["queue_id"] == qid and rec["ip"] == ip(31), rec
    assert rec["mx"].rstrip(".") == "mx2.two.test", rec


def test_null_mx_bounces(relay, sink, dns, root_only):
    home = sink(ip(32), 25)
    d = dns(null_mx=["nomail.test"],
            mx={"news.test": [(10, "mx.news.test")]},
            a={"mx.news.test": ip(32)})
    r = relay(*peers.delivery_lines(dns_port=d.port))
    m, mid = peers.make_message("news@news.test", "a@nomail.test", "null")
    qid, = peers.submit(r, "news@news.test", ["a@nomail.test"], [m])
    rec = r.wait_deliveries(1, timeout=30, status="bounced")[0]
    assert rec["queue_id"] == qid, rec
    dsn = home.wait_messages(1, timeout=30)[0]
    assert dsn.sender == "" and dsn.rcpts == ["news@news.test"]
    rc, = peers.parse_dsn(dsn.data)["recipients"]
    assert "a@nomail.test" in rc["final-recipient"]
    assert rc["status"].startswith("5."), rc


def test_nxdomain_bounces(relay, sink, dns, root_only):
    home = sink(ip(33), 25)
    d = dns(mx={"news.test": [(10, "mx.news.test")]},
            a={"mx.news.test": ip(33)})
    assert peers.dns_query(d.port, "nowhere.test", 15)[0] == 3
    r = relay(*peers.delivery_lines(dns_port=d.port))
    m, _ = peers.make_message("news@news.test", "a@nowhere.test", "nx")
    qid, = peers.submit(r, "news@news.test", ["a@nowhere.test"], [m])
    rec = r.wait_deliveries(1, timeout=30, status="bounced")[0]
    assert rec["queue_id"] == qid, rec
    dsn = home.wait_messages(1, timeout=30)[0]
    rc, = peers.parse_dsn(dsn.data)["recipients"]
    assert "a@nowhere.test" in rc["final-recipient"]


def test_a_record_without_mx(relay, sink, dns, root_only):
    host = sink(ip(34), 25)
    d = dns(a={"plain.test": ip(34)})
    assert peers.dns_query(d.port, "plain.test", 15) == (0, 0)
    r = relay(*peers.delivery_lines(dns_port=d.port))
    m, mid = peers.make_message("news@news.test", "a@plain.test", "a rr")
    peers.submit(r, "news@news.test", ["a@plain.test"], [m])
    got = host.wait_messages(1, timeout=30)
    assert got[0].header("Message-ID") == mid
    rec = r.wait_deliveries(1, timeout=15, status="delivered")[0]
    assert rec["ip"] == ip(34), rec


def test_many_domains_then_forgotten(relay, sink, dns, root_only):
    """150 domains (more than twice the initial hash of destinations,
    which must grow) each get their mail through their MX; once idle for
    destination_idle_time_limit every destination is forgotten, and a
    domain's next message builds it anew."""
    n = 150
    host = sink(ip(35), 25)
    doms = ["d%d.many.test" % i for i in range(n)]
    d = dns(mx={dom: [(10, "mx.many.test")] for dom in doms},
            a={"mx.many.test": ip(35)})
    r = relay(*peers.delivery_lines(dns_port=d.port),
              "log_level = debug", "smtp_connection_cache_time_limit = 200ms",
              "destination_idle_time_limit = 1s")
    rcpts = ["r@" + dom for dom in doms]
    m, mid = peers.make_message("news@news.test", rcpts[0], "many")
    qid, = peers.submit(r, "news@news.test", rcpts, [m])
    recs = r.wait_deliveries(n, timeout=60, status="delivered")
    assert sorted(x["recipient"] for x in recs) == sorted(rcpts)
    got = host.wait_messages(n, timeout=30)
    assert sorted(g.rcpts[0] for g in got) == sorted(rcpts)
    assert all(len(g.rcpts) == 1 for g in got)

    forgot = r.wait_log(r"dest-forget dest=(d\d+\.many\.test)$",
                        timeout=20, count=n)
    assert sorted(forgot) == sorted(doms)

    m2, mid2 = peers.make_message("news@news.test", rcpts[7], "again")
    peers.submit(r, "news@news.test", [rcpts[7]], [m2])
    rec = r.wait_deliveries(n + 1, timeout=30, status="delivered")[-1]
    assert rec["recipient"] == rcpts[7], rec
    assert any(g.header("Message-ID") == mid2
               for g in host.wait_messages(n + 1, timeout=30))
