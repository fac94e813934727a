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
