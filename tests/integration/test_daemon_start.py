"""What the daemon says at start about its configuration."""

import os


def test_short_myhostname_warns(relay):
    r = relay("myhostname = relay")
    assert "myhostname-not-fqdn name=relay" in r.run_log()
    with r.client() as c:
        assert c.banner.lines[0].startswith(b"220 relay ")


def test_fqdn_myhostname_is_quiet(relay):
    r = relay("myhostname = relay.example.com")
    assert "myhostname-not-fqdn" not in r.run_log()


def test_sign_threads_default_is_cpu_count(relay):
    """sign_threads = 0 (the default) starts one worker per online CPU,
    and the start log says how many."""
    r = relay("sign_threads = 0")
    assert "sign-pool threads=%d sign_threads=0" % os.cpu_count() \
        in r.run_log()
    r.stop()
    r = relay("sign_threads = 3", name="three")
    assert "sign-pool threads=3 sign_threads=3" in r.run_log()
