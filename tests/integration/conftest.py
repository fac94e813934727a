"""Fixtures for waxseal's integration tests.

relay(*lines, listen6=False, start=True) starts a waxseal daemon whose
configuration is our base settings (a free port on 127.0.0.1, a spool in
the test's tmp_path, io_backend from WAXSEAL_IO_BACKEND, log_level info,
myhostname relay.test) followed by the test's own lines. Every daemon a
test started is stopped at teardown with SIGTERM: it must exit 0, and no
sanitizer report may appear in its log.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import waxtest  # noqa: E402


def pytest_report_header(config):
    return "waxseal: %s, io_backend=%s" % (waxtest.waxseal_bin(),
                                           waxtest.io_backend())


@pytest.fixture
def relay(tmp_path):
    made = []

    def factory(*lines, listen6=False, start=True, name=None):
        r = waxtest.Relay(tmp_path, lines, listen6=listen6,
                          name=name or "relay%d" % len(made))
        made.append(r)
        if start:
            r.start()
        return r

    if not os.access(waxtest.waxseal_bin(), os.X_OK):
        pytest.fail("no waxseal binary at %s (set WAXSEAL_BIN)"
                    % waxtest.waxseal_bin())
    yield factory

    problems = []
    for r in made:
        try:
            if r.running():
                r.stop()
            else:
                r.check_sanitizers()
        except AssertionError as e:
            problems.append(str(e))
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory):
    """(cert, key) of a self-signed certificate for relay.test."""
    d = tmp_path_factory.mktemp("tls")
    got = waxtest.gen_cert(d)
    if got is None:
        pytest.skip("the openssl command is not installed")
    return got


# ---- peers for the delivery tests (see peers.py) ----

import peers  # noqa: E402


def _closing_factory(make):
    made = []

    def factory(*a, **kw):
        obj = make(*a, **kw)
        made.append(obj)
        return obj.start()
    return made, factory


@pytest.fixture
def sink():
    """sink(addr, port, **opts): Postfix's smtp-sink listening on
    addr:port, storing what it receives; .messages() lists them.
    Stopped at teardown."""
    if not os.access(peers.SMTP_SINK, os.X_OK):
        pytest.skip("Postfix's smtp-sink (%s) is not installed"
                    % peers.SMTP_SINK)
    made, factory = _closing_factory(peers.Sink)
    yield factory
    for s in made:
        s.close()


@pytest.fixture
def aiosink():
    """aiosink(addr, port, data_delay=, tls=, broken_tls=, rcpt_reply=):
    an aiosmtpd server that counts its open sessions."""
    pytest.importorskip("aiosmtpd",
                        reason="python3-aiosmtpd is not installed")
    made, factory = _closing_factory(peers.AioSink)
    yield factory
    for s in made:
        s.close()


@pytest.fixture
def dns():
    """dns(mx={dom: [(pref, host)]}, a={host: ip}, null_mx=[dom]):
    dnsmasq on a free port of 127.0.0.1; .port for dns_servers."""
    if not os.access(peers.DNSMASQ, os.X_OK):
        pytest.skip("dnsmasq (%s, package dnsmasq-base) is not installed"
                    % peers.DNSMASQ)
    made, factory = _closing_factory(
        lambda **kw: peers.Dns(**kw))
    yield factory
    for d in made:
        d.close()


@pytest.fixture
def postfix():
    """postfix(relayhost): a private Postfix instance whose smtpd
    listens on 127.0.0.1:.port and relays everything to relayhost."""
    if not os.access(peers.POSTFIX, os.X_OK):
        pytest.skip("Postfix (%s) is not installed" % peers.POSTFIX)
    if not peers.is_root():
        pytest.skip("starting a Postfix instance needs root")
    made, factory = _closing_factory(
        lambda relayhost, **kw: peers.Postfix(waxtest.free_port(),
                                              relayhost, **kw))
    yield factory
    for p in made:
        p.close()


@pytest.fixture
def root_only():
    """Skip unless root: the MX tests bind port 25 on 127.0.0.x."""
    if not peers.is_root():
        pytest.skip("binding port 25 for MX delivery needs root")
