"""Nothing acknowledged is lost: clients send over many pipelined
connections, waxseal is killed with SIGKILL in the middle, and after a
restart every message that got "250 queued as ID" is in the spool, byte for
byte. A second round also cuts the newest segment file short, as a torn
write would: everything before the cut must survive, and the spool must
take new mail after it."""

import concurrent.futures
import os
import secrets
import threading
import time

import waxtest
from waxtest import dot_stuff, queued_id

CONNS = 10
PER_CONN = 300          # at most 3000 messages a round
KILL_AFTER = 1000       # acknowledgements before the kill


def make_message(tok):
    body = (b"token %s\r\n" % tok.encode() +
            b".dotted line %s\r\n" % secrets.token_hex(8).encode() +
            b"".join(b"%d %s\r\n" % (i, secrets.token_hex(24).encode())
                     for i in range(1 + len(tok) % 5)))
    head = (b"From: b@example.org\r\nTo: a@example.com\r\n"
            b"Subject: crash %s\r\nX-Token: %s\r\n" % (tok.encode(),
                                                      tok.encode()))
    return head, body


class Round:
    def __init__(self, r, name):
        self.r = r
        self.name = name
        self.acks = []              # (qid, tok, head, body)
        self.lock = threading.Lock()
        self.killed = threading.Event()
        self.errors = []

    def sender(self, tid):
        """One pipelined connection: the end of each message travels with
        the MAIL, RCPT and DATA of the next."""
        prefix = (b"MAIL FROM:<b@example.org>\r\nRCPT TO:<a@example.com>\r\n"
                  b"DATA\r\n")
        try:
            c = waxtest.Client(self.r.host, self.r.port, timeout=20)
            c.ehlo("crash%d.test" % tid)
            c.send(prefix)
            for i in range(PER_CONN):
                rs = c.replies(3)
                assert [x.code for x in rs] == [250, 250, 354], rs
                tok = "%s-%d-%d-%s" % (self.name, tid, i,
                                       secrets.token_hex(6))
                head, body = make_message(tok)
                last = i == PER_CONN - 1 or self.killed.is_set()
                c.send(dot_stuff(head + b"\r\n" + body) + b".\r\n" +
                       (b"QUIT\r\n" if last else prefix))
                qid = queued_id(c.reply())
                with self.lock:
                    self.acks.append((qid, tok, head, body))
                if last:
                    break
            c.close()
        except (OSError, EOFError) as e:
            if not self.killed.is_set():
                self.errors.append("conn %d: %r" % (tid, e))
        except AssertionError as e:
            if not self.killed.is_set():
                self.errors.append("conn %d: %s" % (tid, e))

    def run_and_kill(self):
        threads = [threading.Thread(target=self.sender, args=(t,),
                                    daemon=True) for t in range(CONNS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with self.lock:
                n = len(self.acks)
            if n >= KILL_AFTER or not any(t.is_alive() for t in threads):
                break
            time.sleep(0.005)
        self.killed.set()
        self.r.kill9()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads), "senders hang"
        assert not self.errors, self.errors
        assert len(self.acks) >= min(KILL_AFTER, 100), (
            "only %d acknowledged before the kill" % len(self.acks))


def check_stored(r, acks):
    """Every (qid, tok, head, body) is in the spool, byte for byte."""
    listed = {m["id"]: m for m in r.queue_list()}
    missing = [a[0] for a in acks if a[0] not in listed]
    assert not missing, "%d acknowledged messages lost, e.g. %s" % (
        len(missing), missing[:5])
    for qid, _, _, _ in acks:
        assert listed[qid]["sender"] == "b@example.org"
        assert listed[qid]["recipients"] == ["a@example.com"]

    def one(a):
        qid, tok, head, body = a
        stored = r.queue_cat(qid)
        if head not in stored or not stored.endswith(b"\r\n\r\n" + body):
            return "%s (token %s) stored as %r" % (qid, tok, stored[:400])
        return None

    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        bad = [x for x in ex.map(one, acks) if x]
    assert not bad, "%d differ:\n%s" % (len(bad), "\n".join(bad[:3]))
    return listed


def newest_segment(r):
    segs = sorted(p for p in os.listdir(r.queue_dir)
                  if p.startswith("seg-") and p.endswith(".log"))
    assert segs, os.listdir(r.queue_dir)
    return os.path.join(str(r.queue_dir), segs[-1])


def test_kill9_while_sending(relay):
    r = relay()

    # Round 1: kill while ~10 connections are sending.
    r1 = Round(r, "a")
    r1.run_and_kill()
    r.start()
    check_stored(r, r1.acks)
    assert "spool dir=" in r.run_log()

    # Round 2: the same on the recovered spool; then tear the tail.
    r2 = Round(r, "b")
    r2.run_and_kill()
    before = {m["id"] for m in r.queue_list()}
    seg = newest_segment(r)
    size = os.path.getsize(seg)
    assert size > 3
    os.truncate(seg, size - 3)

    r.start()
    after = {m["id"] for m in r.queue_list()}
    lost = before - after
    assert after <= before, "messages appeared from nowhere: %s" % (
        after - before)
    # Three bytes cut off can break only the last record.
    assert len(lost) <= 1, "cutting 3 bytes lost %d messages" % len(lost)
    r1ids = {a[0] for a in r1.acks}
    assert not (lost & r1ids), "a round-1 message was lost: %s" % lost
    check_stored(r, r1.acks + [a for a in r2.acks if a[0] not in lost])

    # New mail after the cut is stored after it, and survives a restart.
    with r.client() as c:
        c.ehlo()
        head, body = make_message("c-0-0-after-cut")
        qid = c.send_message("b@example.org", ["a@example.com"],
                             head + b"\r\n" + body)
    r.restart()
    check_stored(r, [(qid, "c", head, body)] + r1.acks)
    assert qid in r.queue_ids()


def test_damaged_record_on_disk(relay):
    """One stored message damaged on disk (a flipped bit in its text) is
    lost alone: the messages stored after it stay, and the daemon says
    so when it starts."""
    r = relay()
    acks = []
    with r.client() as c:
        c.ehlo()
        for i in range(3):
            tok = "damage-%d-%s" % (i, secrets.token_hex(6))
            head, body = make_message(tok)
            qid = c.send_message("b@example.org", ["a@example.com"],
                                 head + b"\r\n" + body)
            acks.append((qid, tok, head, body))
    r.stop()

    seg = newest_segment(r)
    with open(seg, "r+b") as f:
        data = f.read()
        at = data.find(acks[1][1].encode())
        assert at > 0, "the second message's token is not in %s" % seg
        f.seek(at)
        f.write(bytes([data[at] ^ 0x01]))

    r.start()
    assert "spool-damaged" in r.run_log()
    assert "corrupt_records=1" in r.run_log()
    assert sorted(r.queue_ids()) == sorted([acks[0][0], acks[2][0]])
    check_stored(r, [acks[0], acks[2]])
