"""What the daemon says at start about its configuration."""


def test_short_myhostname_warns(relay):
    r = relay("myhostname = relay")
    assert "myhostname-not-fqdn name=relay" in r.run_log()
    with r.client() as c:
        assert c.banner.lines[0].startswith(b"220 relay ")


def test_fqdn_myhostname_is_quiet(relay):
    r = relay("myhostname = relay.example.com")
    assert "myhostname-not-fqdn" not in r.run_log()
