"""`waxseal queue`: the listing and the message as the documented command
lines give them, read-only while the daemon runs."""

import json
import subprocess

import waxtest


def queue(r, *args):
    return subprocess.run([waxtest.waxseal_bin(), "queue", "-c",
                           str(r.conf)] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=60)


def test_list_json_after_subcommand(relay):
    """`waxseal queue -c FILE list --json`, as its usage line writes it."""
    r = relay()
    with r.client() as c:
        c.ehlo()
        qid = c.send_message("b@example.org", ["a@example.com", "c@x.test"],
                             b"From: b@example.org\r\nSubject: l\r\n\r\nl\r\n")
    p = queue(r, "list", "--json")
    assert p.returncode == 0, (p.returncode, p.stderr.decode())
    lines = [json.loads(x) for x in p.stdout.decode().splitlines()]
    assert len(lines) == 1, lines
    m = lines[0]
    assert set(m) >= {"id", "size", "arrival", "state", "sender",
                      "recipients"}, m
    assert (m["id"], m["sender"], m["recipients"], m["state"]) == (
        qid, "b@example.org", ["a@example.com", "c@x.test"], "queued")


def test_list_text_and_cat(relay):
    r = relay()
    with r.client() as c:
        c.ehlo()
        qid = c.send_message("b@example.org", ["a@example.com"],
                             b"From: b@example.org\r\nSubject: t\r\n\r\ntext\r\n")
    p = queue(r, "list")
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    assert out.startswith(qid + " "), out
    assert "<b@example.org> <a@example.com>" in out, out
    p = queue(r, "cat", qid)
    assert p.returncode == 0 and p.stdout.endswith(b"\r\n\r\ntext\r\n")
    p = queue(r, "cat", "0123456789ABCDEF")
    assert p.returncode != 0 and b"no such message" in p.stderr
