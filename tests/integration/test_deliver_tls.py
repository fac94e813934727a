"""STARTTLS on delivery (smtp_tls_security_level): `may` encrypts where
the peer offers it, and falls back to plaintext on a new connection when
the handshake fails; `encrypt` defers rather than send in plaintext."""
import peers
from waxtest import free_port


def relay_to(relay, tmp_path, srv, level):
    tm = tmp_path / "transport"
    tm.write_text("tls.test %s\n" % srv.endpoint)
    return relay(*peers.delivery_lines(), "transport_maps = %s" % tm,
                 "smtp_tls_security_level = %s" % level)


def test_may_encrypts(relay, aiosink, tls_cert, tmp_path):
    srv = aiosink("127.0.0.40", free_port(host="127.0.0.40"),
                  tls=peers.server_tls_context(*tls_cert))
    r = relay_to(relay, tmp_path, srv, "may")
    m, mid = peers.make_message("news@news.test", "a@tls.test", "tls")
    peers.submit(r, "news@news.test", ["a@tls.test"], [m])
    got = srv.wait_messages(1, timeout=30)
    assert got[0].tls_version in ("TLSv1.2", "TLSv1.3"), got[0].tls_version
    assert peers.body_of(got[0].data) == peers.body_of(m)
    rec = r.wait_deliveries(1, timeout=15, status="delivered")[0]
    assert rec["tls_version"] == got[0].tls_version, rec
    assert rec["tls_cipher"], rec


def test_may_falls_back_after_failed_handshake(relay, aiosink, tmp_path):
    srv = aiosink("127.0.0.41", free_port(host="127.0.0.41"),
                  broken_tls=True)
    r = relay_to(relay, tmp_path, srv, "may")
    m, mid = peers.make_message("news@news.test", "a@tls.test", "fallback")
    peers.submit(r, "news@news.test", ["a@tls.test"], [m])
    got = srv.wait_messages(1, timeout=60)
    assert got[0].tls_version is None
    assert got[0].header("Message-ID") == mid
    assert srv.connections >= 2, "no new connection after the failure"
    rec = r.wait_deliveries(1, timeout=15, status="delivered")[0]
    assert not rec["tls_version"], rec


def test_encrypt_defers_without_starttls(relay, aiosink, tmp_path):
    srv = aiosink("127.0.0.42", free_port(host="127.0.0.42"))
    r = relay_to(relay, tmp_path, srv, "encrypt")
    m, _ = peers.make_message("news@news.test", "a@tls.test", "must tls")
    qid, = peers.submit(r, "news@news.test", ["a@tls.test"], [m])
    rec = r.wait_deliveries(1, timeout=30, status="deferred")[0]
    assert rec["queue_id"] == qid, rec
    assert srv.messages() == [], "sent in plaintext under encrypt"
    assert qid in r.queue_ids()
