"""waxseal reads main.cf expansions as Postfix does: the same file is
expanded by Postfix's own postconf(1) and by `waxseal config`, and the
values must agree (postconf -x prints expanded values; waxseal config
prints re-loadable ones, with $ written as $$)."""

import os
import shutil
import subprocess

import pytest

import waxtest

POSTCONF = shutil.which("postconf") or "/usr/sbin/postconf"

CASES = [
    # (main.cf lines, parameters compared)
    (["myhostname = mx.example", "relayhost =",
      "smtpd_banner = ${myhostname?up:}|${relayhost:no relay}|"
      "${relayhost?{via $relayhost}:{direct}}|$(relayhost?x)|"
      "${relayhost:{}}|${myhostname:{}}."],
     ["smtpd_banner"]),
    (["myhostname = mx.example", "relayhost = [smart.example]:25",
      "smtpd_banner = ${relayhost?{via $relayhost}:{direct}} "
      "${relayhost:none}${relayhost?${myhostname:$relayhost}}"
      "${relayhost?[$myhostname]}"],
     ["smtpd_banner"]),
    (["myhostname = mx.example", "relayhost = $myhostname",
      "smtpd_banner = $$ ${myhostname}$(relayhost) $myhostname.x "
      "$${myhostname?y}"],
     ["smtpd_banner", "relayhost"]),
    # Blanks around braces and before texts, text2 without braces, and
    # "set" meaning the value as written ($relayhost is empty).
    (["myhostname = mx.example", "relayhost =",
      "transport_maps = $relayhost",
      "smtpd_banner = x${relayhost ? {a} : {b} }|${relayhost?{a}:b}|"
      "${relayhost: c}|${relayhost:{ d }}|${myhostname ?e}|"
      "${relayhost?{a}: f}|${myhostname ? g}|${transport_maps?T}"],
     ["smtpd_banner"]),
    (["myhostname = mx.example",
      "mynetworks = 10.0.0.0/8 ${relayhost?192.0.2.0/24}"
      "${relayhost:198.51.100.0/24}"],
     ["mynetworks"]),
]


def postconf_values(d, names):
    out = subprocess.run([POSTCONF, "-c", str(d), "-xh"] + names,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def waxseal_values(conf, names):
    out = subprocess.run([waxtest.waxseal_bin(), "config", "-c",
                          str(conf)], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    got = {}
    for line in out.stdout.splitlines():
        name, _, value = line.partition(" =")
        got[name] = value.strip().replace("$$", "$")
    return [got[n] for n in names]


@pytest.mark.parametrize("lines,names", CASES)
def test_expansion_agrees_with_postconf(tmp_path, lines, names):
    if not os.access(POSTCONF, os.X_OK):
        pytest.skip("Postfix's postconf is not installed: %s" % POSTCONF)
    (tmp_path / "main.cf").write_text("\n".join(lines) + "\n")
    # postconf reads master.cf beside main.cf; an empty one will do.
    (tmp_path / "master.cf").write_text("")
    want = postconf_values(tmp_path, names)
    got = waxseal_values(tmp_path / "main.cf", names)
    if names == ["mynetworks"]:
        # waxseal prints networks as it parsed them, comma-separated.
        want = [", ".join(w.split()) for w in want]
    assert got == want
