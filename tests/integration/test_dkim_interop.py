"""DKIM interop: waxseal's signatures checked by dkimpy and OpenDKIM, and
dkimpy's signatures checked by `waxseal verify`; both canonicalisations,
both algorithms, dual signatures, repeated headers; tampering fails in
each direction. Everything runs on loopback; keys come from
`waxseal genkey`.
"""
import base64
import os
import re
import shutil
import subprocess

import pytest

dkim = pytest.importorskip("dkim", reason="python3-dkim is not installed")

BIN = os.environ.get("WAXSEAL_BIN", "")
if not BIN or not os.path.exists(BIN):
    pytest.skip("WAXSEAL_BIN is unset or missing: build the waxseal binary",
                allow_module_level=True)

MSG = (b"Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\n"
       b"From: \"News, Weekly\" <news@example.com>\n"
       b"To: reader@example.net\n"
       b"Received: from c by d; Mon, 1 Jan 2024 00:00:01 +0000\n"
       b"Subject: Hello   there\n"
       b"X-Tag: one\n"
       b"X-Tag: two\n"
       b"Date: Mon, 01 Jan 2024 00:00:00 +0000\n"
       b"Message-ID: <1@example.com>\n"
       b"\n"
       b"Hi  there, \n"
       b".dot line\n"
       b"caf\xc3\xa9\n"
       b"\n\n")


def txt_of(path):
    """The record a genkey .txt file publishes, strings joined."""
    return "".join(re.findall(r'"([^"]*)"', open(path).read()))


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    for sel, t in (("rsa", "rsa"), ("ed", "ed25519")):
        subprocess.run([BIN, "genkey", "-d", "example.com", "-s", sel,
                        "-t", t, "-D", str(d)], check=True)
        assert os.stat(d / f"{sel}.private").st_mode & 0o777 == 0o600
    return d


def conf_for(d, canon, sels):
    (d / "kt").write_text("".join(
        f"{s} example.com:{s}:{d}/{s}.private\n" for s in sels))
    (d / "st").write_text("".join(f"*@example.com {s}\n" for s in sels))
    c = d / f"w-{canon.replace('/', '-')}-{'-'.join(sels)}.conf"
    c.write_text(f"dkim_key_table = file:{d}/kt\n"
                 f"dkim_signing_table = refile:{d}/st\n"
                 f"dkim_canonicalization = {canon}\n"
                 f"dkim_sign_headers = From, To, Subject, Date, "
                 f"Message-ID, Received, X-Tag\n"
                 f"dkim_multiple_signatures = yes\n")
    return c


def wax_sign(keys, canon, sels, msg=MSG):
    c = conf_for(keys, canon, sels)
    p = subprocess.run([BIN, "sign", "-c", str(c)], input=msg,
                       capture_output=True)
    assert p.returncode == 0, p.stderr
    return p.stdout


def dnsfunc_for(keys):
    recs = {f"{s}._domainkey.example.com.".encode(): txt_of(keys / f"{s}.txt")
            .encode() for s in ("rsa", "ed")}

    def dnsfunc(name, timeout=5):
        return recs.get(name)
    return dnsfunc


def dkimpy_verify_all(signed, keys):
    """dkimpy checks one signature per call (idx)."""
    n = signed.count(b"DKIM-Signature:")
    out = []
    for i in range(n):
        try:
            out.append(dkim.DKIM(signed).verify(idx=i,
                                                dnsfunc=dnsfunc_for(keys)))
        except dkim.ValidationError:
            # dkimpy raises for a body hash mismatch: a failure.
            out.append(False)
    return out


CANONS = ["relaxed/relaxed", "simple/simple", "relaxed/simple",
          "simple/relaxed"]


@pytest.mark.parametrize("canon", CANONS)
@pytest.mark.parametrize("sels", [["rsa"], ["ed"], ["rsa", "ed"]])
def test_waxseal_signs_dkimpy_verifies(keys, canon, sels):
    signed = wax_sign(keys, canon, sels)
    assert signed.count(b"DKIM-Signature:") == len(sels)
    assert b"\r\n" in signed and b"\n" not in signed.replace(b"\r\n", b"")
    assert all(len(l) <= 78 for l in signed.split(b"\r\n")[:12])
    assert dkimpy_verify_all(signed, keys) == [True] * len(sels)
    h = re.search(rb"h=([^;]*);", signed).group(1)
    assert re.sub(rb"\s", b"", h).lower().count(b"received") == 2
    bad = signed.replace(b"Hi  there", b"Hi  thEre")
    assert dkimpy_verify_all(bad, keys) == [False] * len(sels)
    bad = signed.replace(b"from c by d", b"from x by d")
    assert dkimpy_verify_all(bad, keys) == [False] * len(sels)


def dkimpy_key(keys, sel):
    """dkimpy takes rsa as PEM but ed25519 as the base64 32-byte seed,
    the last 32 bytes of the PKCS#8 DER that genkey writes."""
    pem = open(keys / f"{sel}.private", "rb").read()
    if sel != "ed":
        return pem
    der = base64.b64decode(b"".join(pem.split(b"\n")[1:-2]))
    return base64.b64encode(der[-32:])


def dkimpy_sign(keys, sel, canon, msg=MSG):
    m = msg.replace(b"\n", b"\r\n")
    algo = b"ed25519-sha256" if sel == "ed" else b"rsa-sha256"
    c = tuple(x.encode() for x in canon.split("/"))
    sig = dkim.sign(m, sel.encode(), b"example.com", dkimpy_key(keys, sel),
                    canonicalize=c, signature_algorithm=algo,
                    include_headers=[b"from", b"to", b"subject",
                                     b"x-tag", b"x-tag"])
    return sig + m


def wax_verify(signed, args):
    return subprocess.run([BIN, "verify"] + args, input=signed,
                          capture_output=True)


def test_dkimpy_length_and_sha1_are_not_passed(keys):
    """What dkimpy signs with a body length (l=) or with rsa-sha1 does
    not pass `waxseal verify`: l= is a permerror (content appended after
    the signed length would pass too), rsa-sha1 a fail (RFC 8301); the
    same key and message without them pass."""
    m = MSG.replace(b"\n", b"\r\n")
    args = ["--key", f"example.com:rsa:{keys}/rsa.txt"]
    key = dkimpy_key(keys, "rsa")
    for opts, want in (({}, "pass"),
                       ({"length": True}, "permerror (l= not supported)"),
                       ({"signature_algorithm": b"rsa-sha1"},
                        "fail (rsa-sha1 unsupported, RFC 8301)")):
        sig = dkim.sign(m, b"rsa", b"example.com", key,
                        include_headers=[b"from", b"subject"], **opts)
        assert bool(re.search(rb"[\s;]l=\d", sig)) == ("length" in opts)
        p = wax_verify(sig + m, args)
        assert p.stdout.decode().startswith(
            "dkim=%s header.d=example.com header.s=rsa" % want), p.stdout
        assert p.returncode == (0 if want == "pass" else 1)


@pytest.mark.parametrize("canon", CANONS)
@pytest.mark.parametrize("sel", ["rsa", "ed"])
def test_dkimpy_signs_waxseal_verifies(keys, canon, sel):
    signed = dkimpy_sign(keys, sel, canon)
    args = ["--key", f"example.com:{sel}:{keys}/{sel}.txt"]
    p = wax_verify(signed, args)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.decode().startswith("dkim=pass header.d=example.com "
                                        f"header.s={sel}")
    p = wax_verify(signed.replace(b".dot line", b".dot lime"), args)
    assert p.returncode == 1
    assert p.stdout.startswith(b"dkim=fail (body hash mismatch)")
    p = wax_verify(signed.replace(b"Subject: Hello", b"Subject: Jello"),
                   args)
    assert p.returncode == 1
    assert p.stdout.startswith(b"dkim=fail (signature mismatch)")


def test_dual_signed_by_dkimpy_verified_by_waxseal(keys):
    one = dkimpy_sign(keys, "rsa", "relaxed/relaxed")
    m = MSG.replace(b"\n", b"\r\n")
    sig2 = dkim.sign(one, b"ed", b"example.com", dkimpy_key(keys, "ed"),
                     signature_algorithm=b"ed25519-sha256",
                     include_headers=[b"from", b"subject"])
    p = wax_verify(sig2 + one, ["--key", f"example.com:rsa:{keys}/rsa.txt",
                                "--key", f"example.com:ed:{keys}/ed.txt"])
    assert p.returncode == 0, p.stdout
    assert p.stdout.count(b"dkim=pass") == 2
    assert m in one


def key_records(keys):
    return {f"{s}._domainkey.example.com": txt_of(keys / f"{s}.txt")
            for s in ("rsa", "ed")}


def test_waxseal_verify_over_dns(keys, dns):
    d = dns(txt=key_records(keys), local=["example.com"])
    signed = wax_sign(keys, "relaxed/relaxed", ["rsa", "ed"])
    p = wax_verify(signed, ["--dns", d.server])
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count(b"dkim=pass") == 2
    p = wax_verify(signed.replace(b"Date: Mon", b"Date: Tue"),
                   ["--dns", d.server])
    assert p.returncode == 1 and p.stdout.count(b"dkim=fail") == 2
    # A selector the server does not know is a permanent error.
    p = wax_verify(signed.replace(b"s=ed;", b"s=zz;"), ["--dns", d.server])
    assert b"dkim=permerror (no key) header.d=example.com header.s=zz" \
        in p.stdout


def opendkim_check(keys, tmp_path, signed, sel):
    """Run opendkim in test mode (-t) with TestPublicKeys: no DNS."""
    (tmp_path / "tpk").write_text(
        f"{sel}._domainkey.example.com {txt_of(keys / (sel + '.txt'))}\n")
    (tmp_path / "od.conf").write_text(
        f"Mode v\nTestPublicKeys {tmp_path}/tpk\nSyslog no\n")
    f = tmp_path / "msg"
    f.write_bytes(signed.replace(b"\r\n", b"\n"))
    p = subprocess.run(["opendkim", "-vvv", "-x", str(tmp_path / "od.conf"),
                        "-t", str(f)], capture_output=True, timeout=60)
    out = (p.stdout + p.stderr).decode(errors="replace")
    m = re.search(r"dkim=(\w+)", out)
    assert m, out
    return m.group(1), out


@pytest.mark.parametrize("canon", CANONS)
def test_waxseal_signs_opendkim_verifies(keys, tmp_path, canon):
    if not shutil.which("opendkim") and not os.path.exists(
            "/usr/sbin/opendkim"):
        pytest.skip("opendkim is not installed (apt-get install opendkim)")
    os.environ["PATH"] += ":/usr/sbin"
    signed = wax_sign(keys, canon, ["rsa"])
    res, out = opendkim_check(keys, tmp_path, signed, "rsa")
    assert res == "pass", out
    res, out = opendkim_check(keys, tmp_path,
                              signed.replace(b"caf", b"cab"), "rsa")
    assert res == "fail", out


def test_waxseal_ed25519_opendkim(keys, tmp_path):
    if not os.path.exists("/usr/sbin/opendkim"):
        pytest.skip("opendkim is not installed (apt-get install opendkim)")
    os.environ["PATH"] += ":/usr/sbin"
    signed = wax_sign(keys, "relaxed/relaxed", ["ed"])
    res, out = opendkim_check(keys, tmp_path, signed, "ed")
    assert res == "pass", out


def opendkim_results(out):
    """Every (result, selector) of the Authentication-Results field that
    opendkim -t -vvv prints (its INSHEADER line), in order. Comments go
    first: a key from DNS is "(2048-bit key; unprotected)"."""
    m = re.search(r"hname='Authentication-Results' hvalue='([^']*)'", out)
    assert m, "no Authentication-Results in opendkim's output:\n" + out
    text = re.sub(r"\([^()]*\)", "", m.group(1))
    return re.findall(r"\bdkim=(\w+)[^;]*?\bheader\.s=([^\s;]+)", text)


def test_opendkim_verifies_over_dns(keys, tmp_path, dns):
    """OpenDKIM's verifier looking the keys up in DNS, as it does in
    production: dnsmasq serves the TXT records on port 53 of a loopback
    address of this test's own (OpenDKIM's Nameservers setting takes no
    port), and opendkim -t checks a dual-signed message through it: one
    `waxseal sign` run whose tables give example.com both keys
    (dkim_multiple_signatures = yes), an rsa-sha256 and an
    ed25519-sha256 signature. Every result OpenDKIM reports must be
    pass, and fail for both once the body or a signed header changes."""
    if not os.path.exists("/usr/sbin/opendkim"):
        pytest.skip("opendkim is not installed (apt-get install opendkim)")
    if os.geteuid() != 0:
        pytest.skip("not root: dnsmasq must bind port 53 (privileged) "
                    "because OpenDKIM's Nameservers setting takes no port")
    # The two backends' runs of this file go in parallel: one address
    # each (the process id tells them apart).
    addr = "127.53.%d.%d" % (os.getpid() // 250 % 250 + 1,
                             os.getpid() % 250 + 1)
    d = dns(port=53, addr=addr, txt=key_records(keys),
            local=["example.com"])
    (tmp_path / "od.conf").write_text(
        f"Mode v\nNameservers {d.addr}\nSyslog no\n")
    signed = wax_sign(keys, "relaxed/relaxed", ["rsa", "ed"])
    algs = re.findall(rb"^DKIM-Signature:.*?\ba=([\w-]+);.*?\bs=(\w+);",
                      signed.split(b"\r\n\r\n")[0]
                      .replace(b"\r\n\t", b" "), re.M)
    assert algs == [(b"rsa-sha256", b"rsa"), (b"ed25519-sha256", b"ed")]
    cases = (("signed", signed, "pass"),
             ("body changed", signed.replace(b"caf", b"cab"), "fail"),
             ("Subject changed",
              signed.replace(b"Subject: Hello", b"Subject: Jello"), "fail"))
    for what, msg, want in cases:
        f = tmp_path / "msg"
        f.write_bytes(msg.replace(b"\r\n", b"\n"))
        p = subprocess.run(["/usr/sbin/opendkim", "-vvv", "-x",
                            str(tmp_path / "od.conf"), "-t", str(f)],
                           capture_output=True, timeout=60)
        out = (p.stdout + p.stderr).decode(errors="replace")
        got = opendkim_results(out)
        assert got == [(want, "rsa"), (want, "ed")], (what, got, out)
    # The keys came from dnsmasq, not from anywhere else.
    for sel in ("rsa", "ed"):
        assert re.search(r"query\[TXT\] %s\._domainkey\.example\.com "
                         % sel, d.log()), d.log()
