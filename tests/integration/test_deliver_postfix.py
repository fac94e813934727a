"""End to end with a real Postfix: swaks submits to a private Postfix
instance whose relayhost is waxseal; waxseal signs and delivers to
smtp-sink, where dkimpy verifies the signature."""
import shutil
import subprocess

import pytest

import peers
from waxtest import free_port

dkim = pytest.importorskip("dkim", reason="python3-dkim is not installed")


def test_postfix_to_waxseal_to_sink(relay, sink, postfix, tmp_path):
    if shutil.which("swaks") is None:
        pytest.skip("swaks is not installed")
    s = sink("127.0.0.70", free_port(host="127.0.0.70"))
    sign_lines, dnsfunc = peers.dkim_tables(tmp_path)
    r = relay(*sign_lines, *peers.delivery_lines(),
              "relayhost = " + s.endpoint)
    pf = postfix("[127.0.0.1]:%d" % r.port)
    body = "Through Postfix and waxseal.\n..a dotted line\nend"
    cp = subprocess.run(
        ["swaks", "--server", "127.0.0.1:%d" % pf.port,
         "--from", "news@news.test", "--to", "reader@dest.test",
         "--header", "Subject: end to end",
         "--header", "Message-Id: <e2e.1@news.test>",
         "--body", body], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        timeout=60)
    assert cp.returncode == 0, cp.stdout.decode(errors="replace")

    # Postfix relayed it to waxseal, which stored it signed.
    peers.wait_for(lambda: r.queue_ids() or s.messages(), 30,
                   "the message to reach waxseal")
    for qid in r.queue_ids():
        assert dkim.verify(r.queue_cat(qid), dnsfunc=dnsfunc)
    try:
        got = s.wait_messages(1, timeout=60)
    except AssertionError:
        raise AssertionError("nothing reached the sink; Postfix log:\n%s\n"
                             "waxseal log:\n%s" % (pf.log(), r.run_log()))
    m = got[0]
    assert m.header("Message-ID") == "<e2e.1@news.test>"
    assert m.sender == "news@news.test" and m.rcpts == ["reader@dest.test"]
    assert b"by postfix.test (Postfix)" in m.data, "not via Postfix"
    assert b"..a dotted line\r\n" in m.data
    assert dkim.verify(m.data, dnsfunc=dnsfunc), m.data
    r.wait_deliveries(1, timeout=15, status="delivered")
