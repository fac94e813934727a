"""SIGHUP reloads delivery settings, as `postfix reload` does: a changed
transport_maps file and a new relayhost route the next messages; a
connection opened before the reload is not used after it; lifting
defer_transports starts the held mail; a broken map keeps everything as
it was."""
import signal

import peers
from waxtest import free_port


def send(r, rcpt, subject):
    m, mid = peers.make_message("news@news.test", rcpt, subject)
    peers.submit(r, "news@news.test", [rcpt], [m])
    return mid


def reload(r, lines, ok=True):
    r.write_config(lines)
    before = r.run_log().count("reloaded config=")
    before_f = r.run_log().count("reload-failed")
    r.signal(signal.SIGHUP)
    if ok:
        r.wait_log(r"reloaded config=", count=before + 1)
    else:
        r.wait_log(r"reload-failed", count=before_f + 1)


def test_reload_routes_and_holds(relay, sink, tmp_path):
    a = sink("127.0.0.80", free_port(host="127.0.0.80"))
    b = sink("127.0.0.81", free_port(host="127.0.0.81"))
    c = sink("127.0.0.82", free_port(host="127.0.0.82"))
    tm = tmp_path / "transport"
    tm.write_text("routed.test  %s\n" % a.endpoint)
    base = peers.delivery_lines() + [
        "transport_maps = %s" % tm,
        # Long enough that the first connection to a would be reused.
        "smtp_connection_cache_time_limit = 60s"]
    r = relay(*base, "smtp_helo_name = before.test")

    mid1 = send(r, "one@routed.test", "before")
    got = a.wait_messages(1, timeout=30)
    assert got[0].header("Message-ID") == mid1
    assert got[0].helo == "before.test", got[0].helo

    # The idle connection was opened under the old settings: the next
    # message to a goes over a new one, with the new EHLO name.
    reload(r, base + ["smtp_helo_name = after.test"])
    mid1b = send(r, "one-b@routed.test", "new helo")
    got = a.wait_messages(2, timeout=30)
    assert got[1].header("Message-ID") == mid1b
    assert got[1].helo == "after.test", got[1].helo

    # The map now sends routed.test to b.
    tm.write_text("routed.test  %s\n" % b.endpoint)
    reload(r, base)
    mid2 = send(r, "two@routed.test", "after map change")
    assert b.wait_messages(1, timeout=30)[0].header("Message-ID") == mid2
    assert len(a.messages()) == 2
    r.wait_log(r"delivery-reloaded relayhost=- transport_maps=%s"
               % tm, count=1)

    # A relayhost takes every domain.
    reload(r, base + ["relayhost = %s" % c.endpoint])
    mid3 = send(r, "three@routed.test", "via relayhost")
    mid4 = send(r, "four@elsewhere.test", "via relayhost too")
    got = c.wait_messages(2, timeout=30)
    assert sorted(g.header("Message-ID") for g in got) == sorted([mid3, mid4])

    # Holding delivery, then lifting the hold, starts the held mail.
    reload(r, base + ["relayhost = %s" % c.endpoint,
                      "defer_transports = smtp"])
    mid5 = send(r, "five@routed.test", "held")
    r.wait_log(r"queued from=<news@news.test>", count=5)
    assert len(c.messages()) == 2
    reload(r, base + ["relayhost = %s" % c.endpoint])
    got = c.wait_messages(3, timeout=30)
    assert mid5 in [g.header("Message-ID") for g in got]

    # A map that does not load is refused and routing stays as it was.
    bad = tmp_path / "missing-transport"
    reload(r, base + ["relayhost = %s" % c.endpoint,
                      "transport_maps = %s" % bad], ok=False)
    mid6 = send(r, "six@routed.test", "after a failed reload")
    got = c.wait_messages(4, timeout=30)
    assert mid6 in [g.header("Message-ID") for g in got]
    assert r.running()
