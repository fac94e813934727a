"""transport_maps: "example.test [addr]:port" routes one domain,
".example.test" its subdomains; no MX lookup is made for either
(dns_servers points at a port where nothing answers)."""
import peers
from waxtest import free_port


def test_transport_maps_domain_and_subdomains(relay, sink, tmp_path):
    a = sink("127.0.0.11", free_port(host="127.0.0.11"))
    b = sink("127.0.0.12", free_port(host="127.0.0.12"))
    tm = tmp_path / "transport"
    tm.write_text("# domain  next hop\n"
                  "routed.test  %s\n"
                  ".routed.test  %s\n" % (a.endpoint, b.endpoint))
    r = relay(*peers.delivery_lines(), "transport_maps = %s" % tm)
    rcpts = {"top@routed.test": a, "x@sub.routed.test": b,
             "y@deep.sub.routed.test": b}
    for rc in rcpts:
        m, _ = peers.make_message("news@news.test", rc, "to " + rc)
        peers.submit(r, "news@news.test", [rc], [m])
    got_a = a.wait_messages(1, timeout=30)
    got_b = b.wait_messages(2, timeout=30)
    assert [m.rcpts for m in got_a] == [["top@routed.test"]]
    assert sorted(x for m in got_b for x in m.rcpts) == [
        "x@sub.routed.test", "y@deep.sub.routed.test"]
    recs = r.wait_deliveries(3, timeout=30, status="delivered")
    ips = {d["recipient"]: d["ip"] for d in recs}
    assert ips == {"top@routed.test": "127.0.0.11",
                   "x@sub.routed.test": "127.0.0.12",
                   "y@deep.sub.routed.test": "127.0.0.12"}
