"""waxseal-bench run: a tiny scenario end to end, and a two-value sweep.

The runner starts waxseal and waxseal-bench sink itself on loopback
addresses; these tests check the report's structure and counts (what blast
got accepted is what the sinks received and the delivery log shows as
delivered, every DKIM signature verifies, no destination saw more
connections at once than the configured limit), never its speeds.

Environment: WAXSEAL_BIN is <build>/relay/waxseal; the bench is
<build>/bench/waxseal-bench (WAXSEAL_BENCH overrides). WAXSEAL_IO_BACKEND
reaches the daemon through the runner.
"""
import json
import os
import re
import subprocess

import pytest

from waxtest import sanitizer_problems, waxseal_bin


def bench_path():
    """The waxseal-bench binary, found beside the daemon's build."""
    if os.environ.get("WAXSEAL_BENCH"):
        return os.environ["WAXSEAL_BENCH"]
    build = os.path.dirname(os.path.dirname(waxseal_bin()))
    return os.path.join(build, "bench", "waxseal-bench")


BENCH = bench_path()
LIMIT = 3

TINY = """\
# tiny - a test scenario: a few hundred Ed25519-signed messages
[blast]
messages = 300
duration = 30
connections = 8
size = 1500
rcpt-domains = 3
sender-domains = 2

[sink]
verify-every = 1

[waxseal]
default_destination_concurrency_limit = %d
initial_destination_concurrency = 2
sign_threads = 2

[keys]
ed1 = ed25519

[run]
drain-timeout = 30
""" % LIMIT


@pytest.fixture
def scenario(tmp_path):
    path = tmp_path / "tiny.scenario"
    path.write_text(TINY)
    return path


def run(*args, timeout=60):
    env = dict(os.environ)
    env.setdefault("WAXSEAL_IO_BACKEND", "io_uring")
    return subprocess.run([BENCH, "run", "--waxseal", waxseal_bin()]
                          + [str(a) for a in args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def daemon_log_clean(workdir):
    log = (workdir / "waxseal.log").read_text(errors="replace")
    assert not sanitizer_problems(log), log
    return log


def test_tiny_scenario_end_to_end(scenario, tmp_path):
    work = tmp_path / "work"
    r = run("--json", "--keep", work, scenario)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)

    for key in ("scenario", "target", "messages", "intake_per_s",
                "p99_accept_ms", "end_to_end_per_s",
                "end_to_end_recipients_per_s", "drain_s", "waxseal",
                "dkim", "sink", "destinations", "complete"):
        assert key in rep, key
    assert rep["scenario"] == "tiny" and rep["target"] is None
    assert rep["complete"] is True

    # What blast got accepted arrived, once, and is logged as delivered.
    m = rep["messages"]
    assert m["attempted"] == m["accepted"] == 300
    assert m["recipients"] == m["delivered"] == 300
    assert m["bounced"] == m["expired"] == 0
    assert rep["sink"]["messages"] == rep["sink"]["recipients"] == 300
    assert rep["sink"]["replies"]["4xx"] == rep["sink"]["replies"]["5xx"] == 0

    # Every message was checked at the sinks and every signature holds.
    d = rep["dkim"]
    assert d["verified"] == d["pass"] == 300, d
    assert d["fail"] == d["none"] == 0, d

    # One listener per domain; none saw more than the limit at once.
    dests = rep["destinations"]
    assert len(dests) == 3
    assert sum(x["messages"] for x in dests) == 300
    for x in dests:
        assert re.match(r"127\.0\.0\.1[0-2]:\d+$", x["listen"]), x
        assert 1 <= x["max_concurrent"] <= LIMIT, x
        assert x["dkim_pass"] == x["messages"] and x["dkim_fail"] == 0, x

    # The daemon's own figures: present and sane, not judged for speed.
    w = rep["waxseal"]
    assert w["exit_status"] == 0
    assert w["cpu_s"] > 0 and w["peak_rss_kb"] > 0
    assert 0 < w["fsyncs"] <= 300
    assert rep["intake_per_s"] > 0 and rep["end_to_end_per_s"] > 0
    assert rep["p99_accept_ms"] > 0 and rep["drain_s"] >= 0

    # The work directory was kept with what the runner wrote.
    for name in ("waxseal.conf", "transport", "KeyTable", "SigningTable",
                 "blast.json", "sink.json", "delivery.log"):
        assert (work / name).exists(), name
    transport = (work / "transport").read_text()
    assert re.search(r"^example2\.test \[127\.0\.0\.12\]:\d+$", transport,
                     re.M), transport
    log = daemon_log_clean(work)
    assert re.search(r"stopped messages=300 fsyncs=\d+", log), log
    assert "waxseal-bench run: work directory kept" in r.stderr
    assert "accepted 300, delivered 300" in r.stderr


def test_sweep_prints_one_row_per_value(scenario, tmp_path):
    work = tmp_path / "work"
    r = run("--messages", "100", "--keep", work,
            "--sweep", "default_destination_concurrency_limit=1,2",
            "--chart", tmp_path / "sweep.png", scenario)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("default_destination_concurrency_limit")
    rows = [ln.split() for ln in lines[1:] if ln.strip()]
    assert [row[0] for row in rows] == ["1", "2"], r.stdout
    # The last column is the concurrency high-water: at most the value.
    assert [int(row[-1]) <= int(row[0]) for row in rows] == [True, True]
    if os.access("/usr/bin/gnuplot", os.X_OK):
        assert (tmp_path / "sweep.png").stat().st_size > 0
    else:
        assert "skipped the chart" in r.stderr
    for i in (0, 1):
        conf = (work / ("run-%d" % i) / "waxseal.conf").read_text()
        assert conf.rstrip().endswith(
            "default_destination_concurrency_limit = %d" % (i + 1)), conf
        daemon_log_clean(work / ("run-%d" % i))


def test_refuses_scenario_without_limit(tmp_path):
    bad = tmp_path / "nolimit.scenario"
    bad.write_text("[blast]\nconnections = 2\n")
    r = run(bad, timeout=10)
    assert r.returncode == 2
    assert "limit" in r.stderr
    bad.write_text("[blast]\nmessages = 1\n[nonsense]\nx = 1\n")
    r = run(bad, timeout=10)
    assert r.returncode == 2 and "bad line" in r.stderr


def test_help():
    r = subprocess.run([BENCH, "--help"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0 and "run " in r.stdout
    r = run("--help", timeout=10)
    assert r.returncode == 0 and "--sweep" in r.stdout
