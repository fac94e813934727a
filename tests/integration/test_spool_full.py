"""A full spool: past queue_max_size, and on a real file system that runs
out of space, waxseal answers 4xx, keeps running, and loses nothing it
acknowledged."""

import os
import subprocess

import pytest

import waxtest
from waxtest import check, dot_stuff, QUEUED_RE


def try_message(c, i, size):
    """One transaction; ("ok", qid, content) or ("full", reply, None)."""
    content = (b"From: b@example.org\r\nSubject: fill %d\r\n\r\n" % i +
               (b"%06d " % i + b"f" * 70 + b"\r\n") * (size // 79))
    rr = c.cmd("MAIL FROM:<b@example.org>")
    if rr.code != 250:
        return "full", rr, None
    c.expect("RCPT TO:<a@example.com>", 250)
    rr = c.cmd("DATA")
    if rr.code != 354:
        c.expect("RSET", 250)
        return "full", rr, None
    c.send(dot_stuff(content) + b".\r\n")
    rr = c.reply()
    m = QUEUED_RE.match(rr.lines[0])
    if m:
        return "ok", m.group(1).decode(), content
    return "full", rr, None


def fill(r, size, limit, codes):
    """Send until the server refuses; the acknowledged (qid, content)
    list and the refusal."""
    acks = []
    refusal = None
    with r.client() as c:
        c.ehlo()
        for i in range(limit):
            kind, x, content = try_message(c, i, size)
            if kind == "ok":
                acks.append((x, content))
                continue
            refusal = x
            break
        assert refusal is not None, "no refusal after %d messages" % limit
        assert refusal.code in codes, refusal
        # Still refused, still talking.
        kind, x, _ = try_message(c, limit, size)
        assert kind == "full" and x.code in codes, x
        c.expect("NOOP", 250)
        c.expect("QUIT", 221)
    assert r.running(), r.run_log()
    return acks, refusal


def check_acks(r, acks):
    ids = r.queue_ids()
    lost = [q for q, _ in acks if q not in ids]
    assert not lost, "acknowledged and lost: %s" % lost
    for qid, content in acks:
        stored = r.queue_cat(qid)
        assert stored.endswith(b"\r\n\r\n" + content.split(b"\r\n\r\n")[1])


def test_queue_max_size(relay):
    r = relay("queue_max_size = 20000")
    acks, refusal = fill(r, 1500, 100, (452,))
    check(refusal, 452, "4.3.1")
    assert 3 <= len(acks) <= 14, len(acks)

    # A declared size that cannot fit is refused at MAIL.
    with r.client() as c:
        c.ehlo()
        check(c.cmd("MAIL FROM:<b@example.org> SIZE=30000"), 452, "4.3.1")

    r.restart()
    check_acks(r, acks)
    assert len(r.queue_list()) == len(acks)
    # Live bytes are counted again after recovery: still full.
    with r.client() as c:
        c.ehlo()
        kind, x, _ = try_message(c, 999, 1500)
        assert kind == "full", x
        check(x, 452, "4.3.1")


def test_size_declared_too_big_for_spool(relay):
    r = relay("queue_max_size = 20000")
    with r.client() as c:
        c.ehlo()
        check(c.cmd("MAIL FROM:<b@example.org> SIZE=30000"), 452, "4.3.1")
        c.expect("MAIL FROM:<b@example.org> SIZE=3000", 250)


def test_tmpfs_enospc(relay, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs",
                        str(mnt)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    if p.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % p.stdout.decode())
    r = None
    try:
        r = relay("queue_directory = %s" % (mnt / "spool"),
                  "queue_minfree = 0", "queue_segment_size = 256k")
        acks, refusal = fill(r, 8000, 400, (451, 452))
        assert len(acks) >= 10, len(acks)
        r.restart()
        check_acks(r, acks)
        r.stop()
    finally:
        if r is not None and r.running():
            try:
                r.stop()
            except AssertionError:
                r.kill9()
                raise
            finally:
                subprocess.run(["umount", "-l", str(mnt)], timeout=30)
        else:
            subprocess.run(["umount", "-l", str(mnt)], timeout=30)


def test_reload_limits_and_restart_only(relay):
    """SIGHUP applies queue_max_size at once; parameters that only a
    restart applies (queue_segment_size here) are named in a warning, and
    the running value stays."""
    import signal

    r = relay("queue_max_size = 0", "queue_segment_size = 64m")
    with r.client() as c:
        c.ehlo()
        kind, x, _ = try_message(c, 1, 3000)
        assert kind == "ok", x

    r.write_config(["queue_max_size = 2000", "queue_segment_size = 32m"])
    r.signal(signal.SIGHUP)
    r.wait_log(r"reloaded config=")
    assert "reload-needs-restart params=queue_segment_size" in r.run_log()
    with r.client() as c:
        c.ehlo()
        kind, x, _ = try_message(c, 2, 3000)
        assert kind == "full", x
        check(x, 452, "4.3.1")

    # Compared with what runs, not with the last reload: still named
    # on the next reload, and no longer once it is back.
    r.signal(signal.SIGHUP)
    r.wait_log(r"reloaded config=", count=2)
    assert r.run_log().count(
        "reload-needs-restart params=queue_segment_size") == 2
    r.write_config(["queue_max_size = 0", "queue_segment_size = 64m"])
    r.signal(signal.SIGHUP)
    r.wait_log(r"reloaded config=", count=3)
    assert r.run_log().count("reload-needs-restart") == 2
    with r.client() as c:
        c.ehlo()
        kind, x, _ = try_message(c, 3, 3000)
        assert kind == "ok", x
