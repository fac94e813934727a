"""The DKIM command-line tools: `waxseal verify --key DOMAIN:SELECTOR:FILE`
with a PEM public key (openssl pkey -pubout) for rsa and ed25519,
`waxseal genkey`'s key sizes, refusals, file modes and a .txt laid out
line for line as opendkim-genkey (opendkim-tools) lays it out, and what
`waxseal sign` and `waxseal run` do with a configuration whose key table
is missing. Nothing here touches the network.
"""
import base64
import os
import re
import shutil
import subprocess

import pytest

import waxtest

BIN = waxtest.waxseal_bin()
OPENDKIM_GENKEY = "/usr/sbin/opendkim-genkey"

MSG = (b"From: \"News, Weekly\" <news@example.com>\r\n"
       b"To: reader@example.net\r\n"
       b"Subject: Hello there\r\n"
       b"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
       b"Message-ID: <cli@example.com>\r\n"
       b"\r\n"
       b"Hi there,\r\n"
       b".dot line\r\n"
       b"caf\xc3\xa9\r\n")

ALG = {"rsa": "rsa-sha256", "ed": "ed25519-sha256"}

BITS_REFUSED = ("waxseal genkey: rsa bits must be 1024 to 4096 in steps "
                "of 128 (the sizes BoringSSL makes), e.g. 1024, 2048, "
                "3072 or 4096\n")


@pytest.fixture(autouse=True)
def _binary():
    if not os.access(BIN, os.X_OK):
        pytest.fail("no waxseal binary at %s (set WAXSEAL_BIN)" % BIN)


def need_openssl():
    if not shutil.which("openssl"):
        pytest.skip("the openssl command is not installed (package "
                    "openssl)")


def wax(*args, stdin=b"", **kw):
    """waxseal ARGS with stdin; the CompletedProcess, output as bytes."""
    return subprocess.run([BIN] + [str(a) for a in args], input=stdin,
                          capture_output=True, timeout=120, **kw)


def genkey(d, sel, *opts, domain="example.com"):
    p = wax("genkey", "-d", domain, "-s", sel, "-D", d, *opts)
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"" and p.stderr == b"", (p.stdout, p.stderr)
    return d / (sel + ".private")


def openssl(*args):
    p = subprocess.run(["openssl"] + [str(a) for a in args],
                       capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


def key_text(private):
    """What openssl pkey -noout -text says of a private key file."""
    return openssl("pkey", "-in", private, "-noout", "-text").decode()


def public_pem(private):
    """The PEM public key of a private key file, next to it."""
    pem = private.with_suffix(".pem")
    openssl("pkey", "-in", private, "-pubout", "-out", pem)
    assert pem.read_text().startswith("-----BEGIN PUBLIC KEY-----\n")
    return pem


def txt_record(path):
    """The record a .txt zone line publishes, its strings joined."""
    return "".join(re.findall(r'"([^"]*)"', path.read_text()))


def tags(record):
    """A DKIM key record as {tag: value}."""
    out = {}
    for part in record.split(";"):
        if part.strip():
            k, _, v = part.partition("=")
            out[k.strip()] = v.strip()
    return out


def sign_conf(d, sels):
    """A configuration whose tables sign example.com with sels."""
    (d / "KeyTable").write_text("".join(
        "%s example.com:%s:%s/%s.private\n" % (s, s, d, s) for s in sels))
    (d / "SigningTable").write_text("".join(
        "*@example.com %s\n" % s for s in sels))
    c = d / ("sign-%s.conf" % "-".join(sels))
    c.write_text("dkim_key_table = file:%s/KeyTable\n"
                 "dkim_signing_table = refile:%s/SigningTable\n"
                 "dkim_multiple_signatures = yes\n" % (d, d))
    return c


# ---- verify --key with PEM public keys ----

@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """rsa and ed (the signing keys) and rsa2 and ed2 (other keys of
    the same types), each with SEL.pem, its public key."""
    need_openssl()
    d = tmp_path_factory.mktemp("clikeys")
    for sel, t in (("rsa", "rsa"), ("ed", "ed25519"), ("rsa2", "rsa"),
                   ("ed2", "ed25519")):
        public_pem(genkey(d, sel, "-t", t))
    return d


def signed_by(keys, sels):
    p = wax("sign", "-c", sign_conf(keys, sels), stdin=MSG)
    assert p.returncode == 0, p.stderr
    assert p.stdout.count(b"DKIM-Signature:") == len(sels)
    return p.stdout


def verify(signed, *keyargs):
    args = []
    for k in keyargs:
        args += ["--key", k]
    p = wax("verify", *args, stdin=signed)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr


def line(res, sel, reason=None):
    """One line of waxseal verify's output."""
    return "dkim=%s%s header.d=example.com header.s=%s header.a=%s\n" % (
        res, " (%s)" % reason if reason else "", sel, ALG[sel])


@pytest.mark.parametrize("sel", ["rsa", "ed"])
def test_verify_pem_key_passes(keys, sel):
    signed = signed_by(keys, [sel])
    rc, out, err = verify(signed, "example.com:%s:%s/%s.pem"
                          % (sel, keys, sel))
    assert (rc, out, err) == (0, line("pass", sel), b"")


@pytest.mark.parametrize("sel", ["rsa", "ed"])
def test_verify_pem_key_tampered_body_fails(keys, sel):
    signed = signed_by(keys, [sel])
    bad = signed.replace(b"Hi there,", b"Hi there!")
    assert bad != signed
    rc, out, _ = verify(bad, "example.com:%s:%s/%s.pem" % (sel, keys, sel))
    assert (rc, out) == (1, line("fail", sel, "body hash mismatch"))


@pytest.mark.parametrize("sel", ["rsa", "ed"])
def test_verify_pem_wrong_key_fails(keys, sel):
    """Another key of the same type: the signature does not match."""
    signed = signed_by(keys, [sel])
    rc, out, _ = verify(signed, "example.com:%s:%s/%s2.pem"
                        % (sel, keys, sel))
    assert (rc, out) == (1, line("fail", sel, "signature mismatch"))


@pytest.mark.parametrize("sel,other", [("rsa", "ed"), ("ed", "rsa")])
def test_verify_pem_key_of_other_type(keys, sel, other):
    """An ed25519 PEM for an rsa-sha256 signature (and the reverse)."""
    signed = signed_by(keys, [sel])
    rc, out, _ = verify(signed, "example.com:%s:%s/%s.pem"
                        % (sel, keys, other))
    assert (rc, out) == (1, line("permerror", sel,
                                 "key type does not match a="))


def test_verify_pem_dual_signed(keys):
    """Exit 0 only when every signature passes: both right keys give
    two passes and exit 0; the right rsa key and a wrong ed25519 key
    give one pass, one fail and exit 1."""
    signed = signed_by(keys, ["rsa", "ed"])
    rc, out, _ = verify(signed, "example.com:rsa:%s/rsa.pem" % keys,
                        "example.com:ed:%s/ed.pem" % keys)
    assert (rc, out) == (0, line("pass", "rsa") + line("pass", "ed"))
    rc, out, _ = verify(signed, "example.com:rsa:%s/rsa.pem" % keys,
                        "example.com:ed:%s/ed2.pem" % keys)
    assert (rc, out) == (1, line("pass", "rsa") +
                         line("fail", "ed", "signature mismatch"))


@pytest.mark.parametrize("sel", ["rsa", "ed"])
def test_genkey_txt_publishes_the_private_keys_public_half(keys, sel):
    """p= of SEL.txt is the public key openssl derives from SEL.private:
    the SubjectPublicKeyInfo for rsa, the raw 32 bytes for ed25519
    (RFC 8463), which end the SubjectPublicKeyInfo."""
    der = openssl("pkey", "-pubin", "-in", keys / (sel + ".pem"),
                  "-outform", "DER")
    t = tags(txt_record(keys / (sel + ".txt")))
    assert t["k"] == {"rsa": "rsa", "ed": "ed25519"}[sel]
    want = der if sel == "rsa" else der[-32:]
    assert base64.b64decode(t["p"], validate=True) == want


# ---- genkey ----

def mode(path):
    return os.stat(path).st_mode & 0o777


def test_genkey_default_is_rsa_2048(tmp_path):
    need_openssl()
    priv = genkey(tmp_path, "mail")
    assert priv.read_text().startswith("-----BEGIN PRIVATE KEY-----\n")
    assert "Private-Key: (2048 bit" in key_text(priv)
    assert mode(priv) == 0o600
    assert tags(txt_record(tmp_path / "mail.txt"))["k"] == "rsa"


@pytest.mark.parametrize("bits", [1024, 4096])
def test_genkey_rsa_bits(tmp_path, bits):
    need_openssl()
    priv = genkey(tmp_path, "mail", "-b", bits)
    assert "Private-Key: (%d bit" % bits in key_text(priv)
    assert mode(priv) == 0o600


@pytest.mark.parametrize("bits", [512, 1023, 4097, 8192, 1100, 2047,
                                  3000, 4095, "1024abc", "4294969344",
                                  "-2048", ""])
def test_genkey_rsa_bits_refused(tmp_path, bits):
    """Outside 1024..4096 bits, or not a multiple of 128 (BoringSSL would
    round it down: -b 3000 made a 2944-bit key), or not a number: exit
    2 (sign_cli.c), a line on stderr, and no file written."""
    p = wax("genkey", "-d", "example.com", "-s", "mail", "-b", bits,
            "-D", tmp_path)
    assert (p.returncode, p.stdout, p.stderr.decode()) == \
        (2, b"", BITS_REFUSED)
    assert os.listdir(tmp_path) == []


def test_genkey_ed25519_takes_no_bits(tmp_path):
    p = wax("genkey", "-d", "example.com", "-s", "mail", "-t", "ed25519",
            "-b", 512, "-D", tmp_path)
    assert (p.returncode, p.stdout) == (2, b"")
    assert b"-b is for rsa keys" in p.stderr, p.stderr
    assert os.listdir(tmp_path) == []


def test_genkey_ed25519(tmp_path):
    need_openssl()
    priv = genkey(tmp_path, "ed", "-t", "ed25519")
    assert priv.read_text().startswith("-----BEGIN PRIVATE KEY-----\n")
    assert key_text(priv).startswith("ED25519 Private-Key:")
    assert mode(priv) == 0o600
    t = tags(txt_record(tmp_path / "ed.txt"))
    assert (t["v"], t["h"], t["k"]) == ("DKIM1", "sha256", "ed25519")
    assert len(base64.b64decode(t["p"], validate=True)) == 32


def test_genkey_private_mode_0600_over_an_open_file(tmp_path):
    """An existing SEL.private readable by all, and a umask of 0: the
    new key is still mode 0600 (and is a new key)."""
    old = tmp_path / "mail.private"
    old.write_text("old\n")
    os.chmod(old, 0o644)
    p = wax("genkey", "-d", "example.com", "-s", "mail", "-t", "ed25519",
            "-D", tmp_path, preexec_fn=lambda: os.umask(0))
    assert p.returncode == 0, p.stderr
    assert mode(old) == 0o600
    assert old.read_text().startswith("-----BEGIN PRIVATE KEY-----\n")


# ---- genkey's .txt against opendkim-genkey's ----

def need_opendkim_genkey():
    if not os.access(OPENDKIM_GENKEY, os.X_OK):
        pytest.skip("opendkim-genkey (%s, package opendkim-tools) is not "
                    "installed" % OPENDKIM_GENKEY)
    need_openssl()      # opendkim-genkey runs `openssl genrsa`


def opendkim_genkey(d, sel, bits):
    d.mkdir()
    p = subprocess.run([OPENDKIM_GENKEY, "-D", str(d), "-d", "example.com",
                        "-s", sel, "-b", str(bits)], capture_output=True,
                       timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    return (d / (sel + ".txt")).read_text()


def masked(text, lengths=True):
    """A .txt zone line with the key data masked: each quoted string's
    base64 after p= becomes <LENGTH> (or <B64>); the rest, white space
    and line breaks included, is kept as it is."""
    head, sep, rest = text.partition('"p=')
    assert sep, "no p= string in %r" % text
    rest = re.sub(r'[A-Za-z0-9+/=]+(?=")',
                  lambda m: "<%d>" % len(m.group()) if lengths
                  else "<B64>", rest)
    return head + sep + rest


# 2688 bits is the one size genkey makes whose key is a multiple of 250
# base64 characters (500): opendkim-genkey then ends its file with an
# empty string on a line of its own, and so does genkey.
@pytest.mark.parametrize("bits", [1024, 2048, 4096, 2688])
def test_genkey_txt_laid_out_as_opendkim_genkey(tmp_path, bits):
    """Same domain, selector and size: the two .txt files are the same
    lines once the key data is masked, strings split at the same
    places, so tooling that reads opendkim-genkey's file reads ours."""
    need_opendkim_genkey()
    theirs = opendkim_genkey(tmp_path / "opendkim", "mail", bits)
    (tmp_path / "waxseal").mkdir()
    genkey(tmp_path / "waxseal", "mail", "-b", bits)
    ours = (tmp_path / "waxseal" / "mail.txt").read_text()
    assert masked(ours).splitlines(True) == \
        masked(theirs).splitlines(True), (ours, theirs)
    assert masked(ours) != ours
    assert tags(txt_record(tmp_path / "waxseal" / "mail.txt")).keys() == \
        tags(txt_record(tmp_path / "opendkim" / "mail.txt")).keys()


def test_genkey_ed25519_txt_laid_out_as_opendkim_genkey(tmp_path):
    """opendkim-genkey makes rsa keys only (k=rsa is written as is):
    an ed25519 .txt has the layout of its one-string (1024-bit) file,
    k= aside."""
    need_opendkim_genkey()
    theirs = opendkim_genkey(tmp_path / "opendkim", "mail", 1024)
    (tmp_path / "waxseal").mkdir()
    genkey(tmp_path / "waxseal", "mail", "-t", "ed25519")
    ours = (tmp_path / "waxseal" / "mail.txt").read_text()
    assert masked(ours, False).splitlines(True) == \
        masked(theirs, False).replace("k=rsa;", "k=ed25519;") \
        .splitlines(True), (ours, theirs)


# ---- a configuration whose key table is missing ----

def test_sign_and_run_with_missing_key_table(tmp_path, relay):
    """One file for both: `waxseal sign -c` exits 1 ("not signed", its
    usage says) naming the table, writing nothing on stdout; the daemon
    exits 1 as well, with the same reason, before it listens."""
    table = tmp_path / "no-such-KeyTable"
    (tmp_path / "SigningTable").write_text("*@example.com mail\n")
    r = relay("dkim_key_table = file:%s" % table,
              "dkim_signing_table = refile:%s/SigningTable" % tmp_path,
              start=False)
    r.port = waxtest.free_port()
    r.write_config()
    why = "%s: cannot open: No such file or directory\n" % table

    p = wax("sign", "-c", r.conf, stdin=MSG)
    assert (p.returncode, p.stdout, p.stderr.decode()) == \
        (1, b"", "waxseal sign: " + why)

    with pytest.raises(waxtest.DaemonError) as e:
        r.start()
    assert "before listening" in str(e.value), e.value
    assert r.proc.returncode == 1, r.run_log()
    assert "waxseal: " + why in r.run_log().splitlines(True), r.run_log()


def test_sign_and_run_with_unknown_parameter(tmp_path, relay):
    """A file that does not parse: both exit 2 and name FILE:LINE and the
    parameter, as README says of the daemon."""
    r = relay("no_such_parameter = 1", start=False)
    r.port = waxtest.free_port()
    r.write_config()
    p = wax("sign", "-c", r.conf, stdin=MSG)
    assert (p.returncode, p.stdout) == (2, b""), p.stderr
    assert re.search(r"^waxseal sign: %s:\d+: no_such_parameter: "
                     % re.escape(str(r.conf)), p.stderr.decode()), p.stderr

    with pytest.raises(waxtest.DaemonError):
        r.start()
    assert r.proc.returncode == 2, r.run_log()
    assert "no_such_parameter" in r.run_log()
