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
