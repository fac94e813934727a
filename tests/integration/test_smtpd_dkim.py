"""The daemon signs what it accepts: OpenDKIM's KeyTable and SigningTable,
taken verbatim from a typical OpenDKIM setup, drive it; what the spool
stores verifies with dkimpy (python3-dkim); the policy for messages that
cannot be signed answers as configured. With dkim_multiple_signatures
every matching entry signs, in table order; SIGHUP reads the keys again.
"""
import os
import re
import signal
import smtplib
import stat
import subprocess

import pytest

from waxtest import header_fields, waxseal_bin

dkim = pytest.importorskip("dkim", reason="python3-dkim is not installed")


DOMAIN1 = b"mail._domainkey.domain1.tld."


def txt_of(path):
    """The TXT record a genkey .txt file publishes, strings joined."""
    return "".join(re.findall(r'"([^"]*)"', open(path).read()))


def genkey(d, dom, t):
    """waxseal genkey: d/mail.private and d/mail.txt for dom, type t."""
    subprocess.run([waxseal_bin(), "genkey", "-d", dom, "-s", "mail",
                    "-t", t, "-D", str(d)], check=True, timeout=60)


@pytest.fixture
def tables(tmp_path):
    """Keys and tables laid out as in an OpenDKIM installation."""
    kf = tmp_path / "keyfiles"
    for dom, t in (("domain1.tld", "rsa"), ("domain.tld", "ed25519")):
        (kf / dom).mkdir(parents=True)
        genkey(kf / dom, dom, t)
    (tmp_path / "KeyTable").write_text(
        "# name domain:selector:keyfile\n"
        f"mail._domainkey.domain1.tld domain1.tld:mail:"
        f"{kf}/domain1.tld/mail.private\n"
        f"mail._domainkey.% %:mail:{kf}/domain.tld/mail.private\n")
    (tmp_path / "SigningTable").write_text(
        "*@domain1.tld mail._domainkey.domain1.tld\n"
        "* mail._domainkey.%\n")
    return {
        "lines": [f"dkim_key_table = {tmp_path}/KeyTable",
                  f"dkim_signing_table = refile:{tmp_path}/SigningTable"],
        "records": {
            b"mail._domainkey.domain1.tld.":
                txt_of(kf / "domain1.tld" / "mail.txt").encode(),
            b"mail._domainkey.other.example.":
                txt_of(kf / "domain.tld" / "mail.txt").encode(),
        },
        # The records of KEY1 (rsa) and KEY2 (ed25519, the %-entry).
        "key1": txt_of(kf / "domain1.tld" / "mail.txt").encode(),
        "key2": txt_of(kf / "domain.tld" / "mail.txt").encode(),
        "key1_file": kf / "domain1.tld" / "mail.private",
    }


def send(r, frm, body=b"Hello.\r\n", headers=None):
    hdrs = headers if headers is not None else (
        b"From: News <" + frm.encode() + b">\r\n"
        b"To: reader@example.net\r\n"
        b"Subject: this week\r\n"
        b"List-Unsubscribe: <mailto:u@example.org>\r\n"
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    with smtplib.SMTP(r.host, r.port, timeout=30) as s:
        s.ehlo("client.test")
        s.mail(frm)
        s.rcpt("reader@example.net")
        code, resp = s.data(hdrs + b"\r\n" + body)
    return code, resp.decode()


def verify(stored, records):
    return dkim.verify(stored, dnsfunc=lambda name, timeout=5:
                       records.get(name))


def verify_one(stored, idx, name, record):
    """Whether DKIM-Signature number idx (0: the topmost) of stored
    verifies when DNS publishes record at name and nothing else."""
    def txt(qname, timeout=5):
        return record if qname == name else None
    # An rsa signature checked against an ed25519 record reaches PyNaCl,
    # which raises ValueError on its length: a failure, too.
    try:
        return dkim.DKIM(stored).verify(idx=idx, dnsfunc=txt)
    except (dkim.DKIMException, ValueError):
        return False


def send_stored(r, frm):
    """Send a message From frm; the message as the spool stores it."""
    code, resp = send(r, frm)
    assert code == 250, resp
    return r.queue_cat(resp.split()[-1])


def signatures(stored):
    """(a, d, s) of every DKIM-Signature field of stored, top down."""
    head = stored.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    out = []
    for name, val in header_fields(head):
        if name.lower() != "dkim-signature":
            continue
        tags = dict(t.split(b"=", 1) for t in
                    re.sub(rb"\s", b"", val).split(b";") if t)
        out.append((tags[b"a"], tags[b"d"], tags[b"s"]))
    return out


def test_signed_messages_verify(relay, tables):
    r = relay(*tables["lines"])
    code, resp = send(r, "news@domain1.tld")
    assert code == 250, resp
    qid1 = resp.split()[-1]
    code, resp = send(r, "news@other.example",
                      body=b"..a dotted line\r\ncaf\xc3\xa9\r\n\r\n\r\n")
    assert code == 250, resp
    qid2 = resp.split()[-1]

    one = r.queue_cat(qid1)
    two = r.queue_cat(qid2)
    assert b"d=domain1.tld" in one and b"a=rsa-sha256" in one, one
    assert b"d=other.example" in two and b"a=ed25519-sha256" in two, two
    assert verify(one, tables["records"])
    assert verify(two, tables["records"])

    # RFC 8058: List-Unsubscribe-Post is signed, and oversigned.
    h = re.sub(rb"\s", b"", re.search(rb"h=([^;]*);", one).group(1)).lower()
    assert h.count(b"list-unsubscribe-post") == 2, h
    assert h.count(b"from") == 2, h

    # A changed byte breaks the signature.
    assert not verify(one.replace(b"Hello.", b"Hello!"), tables["records"])


def test_no_from_is_refused(relay, tables):
    """Without exactly one From field nothing is signed: 550 5.7.1 with
    the reason, which the log repeats."""
    r = relay(*tables["lines"])
    code, resp = send(r, "x@domain1.tld",
                      headers=b"To: reader@example.net\r\nSubject: s\r\n")
    assert (code, resp) == (550, "5.7.1 message has no From header")
    code, resp = send(r, "x@domain1.tld",
                      headers=b"From: a@domain1.tld\r\n"
                              b"From: b@domain1.tld\r\n")
    assert (code, resp) == (550,
                            "5.7.1 message has more than one From header")
    assert r.queue_list() == []
    r.wait_log(r'reject stage=data from_domain=- reason="message has no '
               r'From header"$')
    r.wait_log(r'reject stage=data from_domain=- reason="message has more '
               r'than one From header"$')


def test_one_signature_by_default(relay, tables):
    """dkim_multiple_signatures = no (the default): both SigningTable
    entries match domain1.tld, the first one alone signs, with KEY1."""
    r = relay(*tables["lines"])
    one = send_stored(r, "news@domain1.tld")
    assert signatures(one) == [(b"rsa-sha256", b"domain1.tld", b"mail")]
    assert verify_one(one, 0, DOMAIN1, tables["key1"])
    assert not verify_one(one, 0, DOMAIN1, tables["key2"])


def test_multiple_signatures(relay, tables):
    """dkim_multiple_signatures = yes: a signature per matching entry, in
    SigningTable order. Both name d=domain1.tld s=mail (the %-entry takes
    the From domain), so each must verify with its own key's record and
    not with the other's. Another domain matches the %-entry alone."""
    r = relay(*tables["lines"], "dkim_multiple_signatures = yes")
    two = send_stored(r, "news@domain1.tld")
    assert signatures(two) == [(b"rsa-sha256", b"domain1.tld", b"mail"),
                               (b"ed25519-sha256", b"domain1.tld", b"mail")]
    assert verify_one(two, 0, DOMAIN1, tables["key1"])
    assert verify_one(two, 1, DOMAIN1, tables["key2"])
    assert not verify_one(two, 0, DOMAIN1, tables["key2"])
    assert not verify_one(two, 1, DOMAIN1, tables["key1"])
    assert not verify_one(two.replace(b"Hello.", b"Hello!"), 1, DOMAIN1,
                          tables["key2"])

    other = send_stored(r, "news@other.example")
    assert signatures(other) == [
        (b"ed25519-sha256", b"other.example", b"mail")]
    assert verify_one(other, 0, b"mail._domainkey.other.example.",
                      tables["key2"])


def sighup(r, event):
    """SIGHUP, then wait for one more log line with event; that line."""
    before = len(re.findall(event, r.run_log(), re.M))
    r.signal(signal.SIGHUP)
    return r.wait_log(r"^.*" + event + r".*$", count=before + 1)[-1]


def test_sighup_reloads_keys(relay, tmp_path, tables):
    """SIGHUP reads the key files again: a key replaced at the same path
    signs the next message. A reload that finds the key world-readable
    fails naming the file, and the daemon goes on with the key it has."""
    key = tables["key1_file"]
    key_a = tables["key1"]
    r = relay(*tables["lines"])
    first = send_stored(r, "news@domain1.tld")
    assert verify_one(first, 0, DOMAIN1, key_a)

    new = tmp_path / "newkey"
    new.mkdir()
    genkey(new, "domain1.tld", "rsa")
    key_b = txt_of(new / "mail.txt").encode()
    assert key_b != key_a
    os.replace(new / "mail.private", key)
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    sighup(r, r" info - reloaded config=")
    second = send_stored(r, "news@domain1.tld")
    assert verify_one(second, 0, DOMAIN1, key_b)
    assert not verify_one(second, 0, DOMAIN1, key_a)

    os.chmod(key, 0o644)
    line = sighup(r, r" error - reload-failed ")
    assert line.endswith(' error - reload-failed reason="%s: readable by '
                         'everyone (mode 0644); chmod o-r"' % key), line
    assert r.running()
    third = send_stored(r, "news@domain1.tld")
    assert signatures(third) == [(b"rsa-sha256", b"domain1.tld", b"mail")]
    assert verify_one(third, 0, DOMAIN1, key_b)
    assert not verify_one(third, 0, DOMAIN1, key_a)
    assert r.run_log().count("reloaded config=") == 1


@pytest.mark.parametrize("action,code", [("accept", 250), ("defer", 451),
                                         ("reject", 550)])
def test_unsigned_action(relay, tmp_path, tables, action, code):
    # Only domain1.tld may be signed here.
    st = tmp_path / "OnlyOne"
    st.write_text("*@domain1.tld mail._domainkey.domain1.tld\n")
    r = relay(tables["lines"][0], f"dkim_signing_table = refile:{st}",
              f"dkim_unsigned_action = {action}")
    got, resp = send(r, "news@nokey.example")
    assert got == code, resp
    assert "from_domain=nokey.example" in r.log(), r.log()
    queued = r.queue_list()
    assert len(queued) == (1 if code == 250 else 0), queued
    if queued:
        assert b"DKIM-Signature" not in r.queue_cat(queued[0]["id"])


def test_bad_key_stops_start(relay, tmp_path, tables):
    key = tmp_path / "keyfiles" / "domain1.tld" / "mail.private"
    os.chmod(key, 0o644)
    r = relay(*tables["lines"], start=False)
    r._pick_ports()
    r.write_config()
    p = subprocess.run([waxseal_bin(), "run", "-c", str(r.conf)],
                       capture_output=True, timeout=30)
    assert p.returncode != 0
    assert str(key).encode() in p.stderr, p.stderr


def sign_workers(r):
    """The daemon's sign threads, by the name they carry."""
    names = []
    for t in os.listdir("/proc/%d/task" % r.proc.pid):
        try:
            names.append(open("/proc/%d/task/%s/comm"
                              % (r.proc.pid, t)).read().strip())
        except OSError:
            pass    # a thread that just ended
    return names.count("waxseal-sign")


def test_sign_threads_resized_by_reload(relay, tables):
    """SIGHUP with another sign_threads: new messages are signed on a pool
    of the new size, jobs in flight finish on the old one, which then
    goes; nothing is lost or left unsigned while clients keep sending."""
    import signal
    import threading
    import time

    r = relay(*tables["lines"], "sign_threads = 2")
    assert sign_workers(r) == 2
    sent, errors, stop = [], [], threading.Event()

    def client(n):
        try:
            with smtplib.SMTP(r.host, r.port, timeout=30) as s:
                s.ehlo("client%d.test" % n)
                for i in range(200):
                    if stop.is_set():
                        break
                    frm = ("news@domain1.tld" if i % 2
                           else "news@other.example")
                    s.mail(frm)
                    s.rcpt("reader@example.net")
                    code, resp = s.data(
                        b"From: <" + frm.encode() + b">\r\n"
                        b"Subject: resize %d %d\r\n\r\nbody\r\n" % (n, i))
                    assert code == 250, resp
                    sent.append(resp.decode().split()[-1])
        except Exception as e:      # reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for want, count in ((3, 1), (1, 2)):
        time.sleep(0.3)
        r.write_config(tables["lines"] + ["sign_threads = %d" % want])
        r.signal(signal.SIGHUP)
        r.wait_log(r"reloaded config=", count=count)
        r.wait_log(r"sign-pool-retired", count=count)
        deadline = time.monotonic() + 10
        while sign_workers(r) != want and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sign_workers(r) == want
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join(60)
    assert errors == []
    assert "sign-pool-resized threads=3 was=2" in r.run_log()
    assert "sign-pool-resized threads=1 was=3" in r.run_log()
    assert "reload-needs-restart" not in r.run_log()

    # Every acknowledged message is stored, signed, and verifies.
    assert len(sent) > 50, len(sent)
    assert sorted(r.queue_ids()) == sorted(sent)
    for qid in sent[::7]:
        assert verify(r.queue_cat(qid), tables["records"]), qid
