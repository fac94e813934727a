"""destination_rate_limit: a destination gets at most N messages per
second, however many are waiting."""
import datetime

import peers
from waxtest import free_port


def stamp(d):
    return datetime.datetime.strptime(d["time"], "%Y-%m-%dT%H:%M:%S.%fZ")


def test_rate_limit_spaces_deliveries(relay, sink, tmp_path):
    slow = sink("127.0.0.41", free_port(host="127.0.0.41"))
    r = relay(*peers.delivery_lines(), "relayhost = " + slow.endpoint,
              "destination_rate_limit = 5")
    msgs = [peers.make_message("news@news.test", "r%d@rate.test" % i,
                               "rate %d" % i)[0] for i in range(8)]
    peers.submit(r, "news@news.test", ["r@rate.test"], msgs)
    recs = r.wait_deliveries(8, timeout=30, status="delivered")
    times = sorted(stamp(d) for d in recs)

    # 5 per second: consecutive starts are 200 ms apart, so 8 messages
    # span at least 7 intervals; a reply may come back a little early
    # relative to the next start, hence the slack per interval.
    span = (times[-1] - times[0]).total_seconds()
    assert span >= 7 * 0.2 - 0.15, "8 deliveries within %.3fs" % span
    assert len(slow.wait_messages(8, timeout=10)) == 8
