"""smtp_tls_security_level = verify: the destination's certificate must
chain to smtp_tls_CAfile and name the MX host; otherwise nothing is sent
and the mail is deferred."""
import subprocess

import peers
from waxtest import free_port


def make_ca_and_leaf(d, name):
    """A test CA and a leaf for name signed by it: (ca, cert, key)."""
    def ossl(*args):
        subprocess.run(["openssl"] + list(args), check=True, timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    ca, cakey = str(d / "ca.pem"), str(d / "ca.key")
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=waxseal test CA", "-keyout", cakey, "-out", ca)
    key, csr, cert = str(d / "leaf.key"), str(d / "leaf.csr"), \
        str(d / "leaf.pem")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + name,
         "-keyout", key, "-out", csr)
    ext = d / "ext.cnf"
    ext.write_text("subjectAltName = DNS:%s\n" % name)
    ossl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", cakey,
         "-CAcreateserial", "-days", "1", "-extfile", str(ext),
         "-out", cert)
    return ca, cert, key


def start_pair(relay, aiosink, dns, tmp_path, addr, name, ca):
    d = tmp_path / "pki"
    d.mkdir()
    _, cert, key = make_ca_and_leaf(d, name)
    srv = aiosink(addr, free_port(host=addr),
                  tls=peers.server_tls_context(cert, key))
    ns = dns(a={name: addr})
    tm = tmp_path / "transport"
    tm.write_text("verify.test [%s]:%d\n" % (name, srv.port))
    r = relay(*peers.delivery_lines(ns.port), "transport_maps = %s" % tm,
              "smtp_tls_security_level = verify",
              "smtp_tls_CAfile = %s" % (ca or str(d / "ca.pem")))
    return srv, r


def test_verify_delivers_to_a_verified_host(relay, aiosink, dns, tmp_path):
    srv, r = start_pair(relay, aiosink, dns, tmp_path, "127.0.0.44",
                   "mx.verify.test", None)
    m, mid = peers.make_message("news@news.test", "a@verify.test", "v")
    peers.submit(r, "news@news.test", ["a@verify.test"], [m])
    got = srv.wait_messages(1, timeout=30)
    assert got[0].tls_version in ("TLSv1.2", "TLSv1.3")
    assert got[0].header("Message-ID") == mid
    rec = r.wait_deliveries(1, timeout=15, status="delivered")[0]
    assert rec["mx"].rstrip(".") == "mx.verify.test", rec


def test_verify_refuses_an_unknown_ca(relay, aiosink, dns, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    ca, _, _ = make_ca_and_leaf(other, "mx.verify.test")
    srv, r = start_pair(relay, aiosink, dns, tmp_path, "127.0.0.45",
                   "mx.verify.test", ca)
    m, _ = peers.make_message("news@news.test", "a@verify.test", "v")
    qid, = peers.submit(r, "news@news.test", ["a@verify.test"], [m])
    rec = r.wait_deliveries(1, timeout=30, status="deferred")[0]
    assert rec["queue_id"] == qid
    assert "verif" in rec["reply"], rec
    assert srv.messages() == [], "sent to a host that did not verify"
