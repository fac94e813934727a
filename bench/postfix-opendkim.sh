#!/bin/bash
# postfix-opendkim.sh - a private Postfix with OpenDKIM as milter, set up
# as the classic tuning guides say, for comparing with waxseal on the same
# scenario, keys and sinks.
#
# usage: bench/postfix-opendkim.sh start WORKDIR RUNDIR [PORT]
#        bench/postfix-opendkim.sh stop WORKDIR
#
# RUNDIR is the kept work directory of a waxseal-bench run of the same
# scenario with fixed sink ports; its KeyTable, SigningTable (OpenDKIM
# formats already) and transport (waxseal's "domain [addr]:port", turned
# into Postfix's "domain smtp:[addr]:port") are used as they are. start
# installs postfix, opendkim and opendkim-tools with apt-get when they are
# missing, writes main.cf, master.cf and opendkim.conf into WORKDIR, starts
# OpenDKIM and `postfix -c WORKDIR/etc start`, and prints the port Postfix
# listens on (127.0.0.1, PORT or a free one). Needs root.
#
# The comparison:
#   waxseal-bench run S --keep R --sink-port 30025        # waxseal; keys
#   bench/postfix-opendkim.sh start W R                   # prints PORT
#   waxseal-bench run S --keep R --sink-port 30025 --target 127.0.0.1:PORT
#   bench/postfix-opendkim.sh stop W
set -eu

usage() {
	sed -n 2,21p "$0" >&2
	exit 2
}

[ $# -ge 2 ] || usage
cmd=$1
work=$2
[ ! -d "$work" ] || work=$(cd "$work" && pwd)

# gone PID TAG: wait up to 10 s for PID to exit after SIGTERM, then
# SIGKILL it, but only while its command line and working directory still
# mention TAG (this instance's files, never a reused pid). OpenDKIM takes
# seconds to leave after SIGTERM while milter connections are open.
gone() {
	case "$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline") $(readlink "/proc/$1/cwd" 2>/dev/null)" in
	*"$2"*) ;;
	*) return 0 ;;
	esac
	for _ in $(seq 100); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$1" 2>/dev/null || true
}

stop() {
	local pid
	if [ -f "$work/etc/main.cf" ]; then
		pid=$(cat "$work/queue/pid/master.pid" 2>/dev/null | tr -d ' ')
		timeout 30 postfix -c "$work/etc" stop 2>/dev/null || true
		[ -z "$pid" ] || gone "$pid" "$work/queue"
	fi
	if [ -f "$work/opendkim.pid" ]; then
		pid=$(cat "$work/opendkim.pid")
		kill "$pid" 2>/dev/null || true
		gone "$pid" "$work/opendkim.conf"
		rm -f "$work/opendkim.pid"
	fi
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

case $cmd in
stop)
	stop
	exit 0
	;;
start) ;;
*) usage ;;
esac

[ $# -ge 3 ] || usage
run=$(cd "$3" && pwd)
port=${4:-$(free_port)}
milter=$(free_port)
for f in KeyTable SigningTable transport; do
	[ -f "$run/$f" ] || {
		echo "postfix-opendkim.sh: $run/$f missing; run" \
			"waxseal-bench run SCENARIO --keep $run first" >&2
		exit 2
	}
done
[ "$(id -u)" = 0 ] || {
	echo "postfix-opendkim.sh: needs root (postfix -c DIR start)" >&2
	exit 2
}

# The packages, only when missing.
missing=
command -v postfix >/dev/null || missing="$missing postfix"
command -v opendkim >/dev/null || missing="$missing opendkim"
command -v opendkim-testkey >/dev/null || missing="$missing opendkim-tools"
if [ -n "$missing" ]; then
	# "No configuration": the package must not start a system Postfix
	# listening on port 25 of every address.
	echo 'postfix postfix/main_mailer_type select No configuration' |
		debconf-set-selections 2>/dev/null || true
	timeout 300 apt-get update -q
	DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q $missing
fi

mkdir -p "$work/etc" "$work/queue" "$work/data"
work=$(cd "$work" && pwd)
chmod 755 "$work"
chown postfix "$work/data"
# Postfix's daemons run as postfix: every directory above WORKDIR must let
# that user through (mktemp -d makes 0700 ones), or master dies at start.
if command -v runuser >/dev/null &&
	! runuser -u postfix -- test -x "$work/queue" 2>/dev/null; then
	echo "postfix-opendkim.sh: user postfix cannot reach $work/queue;" \
		"make the directories above it searchable (chmod o+x)" >&2
	exit 1
fi
stop

# Postfix's transport table from waxseal's.
sed -n 's/^\([^# ][^ ]*\) \[/\1 smtp:[/p' "$run/transport" >"$work/etc/transport"

cat >"$work/etc/main.cf" <<CONF
# written by bench/postfix-opendkim.sh
compatibility_level = 3.6
queue_directory = $work/queue
data_directory = $work/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.test
mydestination =
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains =
smtpd_relay_restrictions = permit_mynetworks, reject
alias_maps =
alias_database =
local_transport = error:local delivery is off
transport_maps = texthash:$work/etc/transport
# Only the sinks on loopback: any other domain fails at once, and no DNS
# server is ever asked.
default_transport = error:only the benchmark's sinks are reachable
relay_transport = error:only the benchmark's sinks are reachable
smtp_dns_support_level = disabled
maillog_file = $work/maillog
maillog_file_prefixes = $work
# The classic tuning: no delays, no client limits, the usual windows.
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 1000
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
default_process_limit = 200
default_destination_concurrency_limit = 20
initial_destination_concurrency = 5
smtp_tls_security_level = may
smtpd_tls_security_level = none
# OpenDKIM signs what smtpd accepts.
smtpd_milters = inet:127.0.0.1:$milter
non_smtpd_milters = \$smtpd_milters
milter_default_action = tempfail
CONF

cat >"$work/etc/master.cf" <<CONF
# written by bench/postfix-opendkim.sh; nothing chrooted
127.0.0.1:$port inet n - n - - smtpd
pickup    unix  n - n 60   1 pickup
cleanup   unix  n - n -    0 cleanup
qmgr      unix  n - n 300  1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n -    - trivial-rewrite
bounce    unix  - - n -    0 bounce
defer     unix  - - n -    0 bounce
trace     unix  - - n -    0 bounce
verify    unix  - - n -    1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -    - proxymap
smtp      unix  - - n -    - smtp
relay     unix  - - n -    - smtp
showq     unix  n - n -    - showq
error     unix  - - n -    - error
retry     unix  - - n -    - error
discard   unix  - - n -    - discard
anvil     unix  - - n -    1 anvil
scache    unix  - - n -    1 scache
postlog   unix-dgram n - n - 1 postlogd
CONF

# OpenDKIM 2.11 signs with one SignatureAlgorithm for every key (rsa-sha256
# by default; an Ed25519 key then fails with "EVP_PKEY_get1_RSA() failed"):
# ed25519-sha256 when every key is Ed25519, and no run with both kinds.
rsa=0 ed=0
for key in $(sed -n 's/^[^#][^ ]* [^:]*:[^:]*:\(.*\)/\1/p' "$run/KeyTable"); do
	case $(openssl pkey -in "$key" -noout -text_pub 2>/dev/null | head -1) in
	*ED25519*) ed=$((ed + 1)) ;;
	*) rsa=$((rsa + 1)) ;;
	esac
done
if [ "$ed" -gt 0 ] && [ "$rsa" -gt 0 ]; then
	echo "postfix-opendkim.sh: OpenDKIM 2.11 cannot sign with RSA and" \
		"Ed25519 keys in one instance (one SignatureAlgorithm)" >&2
	exit 1
fi
algorithm=rsa-sha256
[ "$ed" = 0 ] || algorithm=ed25519-sha256

# RequireSafeKeys is off: OpenDKIM refuses a key when any directory on
# its path is writable by others, and bench work directories live under
# /tmp or /var/tmp (mode 1777). With it on, every message got "key data is
# not secure: /tmp can be read or written by other users", which the
# filter turns into 451 4.7.1 at end of message. The keys are throwaway.
cat >"$work/opendkim.conf" <<CONF
# written by bench/postfix-opendkim.sh
Syslog                  yes
LogWhy                  yes
RequireSafeKeys         false
SignatureAlgorithm      $algorithm
Mode                    s
Socket                  inet:$milter@127.0.0.1
PidFile                 $work/opendkim.pid
KeyTable                file:$run/KeyTable
SigningTable            refile:$run/SigningTable
Canonicalization        relaxed/relaxed
OversignHeaders         From
MultipleSignatures      yes
UMask                   002
CONF

# Before any daemon: OpenDKIM must sign a sample message from each
# signing domain in test mode (exit 0), or every message would be deferred
# with 451 4.7.1 and nothing said (its reasons go to syslog only, and many
# containers have no /dev/log).
for dom in $(sed -n 's/^[^#][^ ]* \([^:]*\):.*/\1/p' "$run/KeyTable" | sort -u); do
	printf 'From: bench@%s\r\nTo: x@example0.test\r\nSubject: preflight\r\n\r\nhello\r\n' \
		"$dom" >"$work/preflight.eml"
	rc=0
	timeout 20 opendkim -x "$work/opendkim.conf" -t "$work/preflight.eml" \
		>"$work/preflight.log" 2>&1 || rc=$?
	# Exit 0 does not mean signed: "no signature added: ..." exits 0 too.
	grep -q '^DKIM-Signature:' "$work/preflight.log" || [ "$rc" != 0 ] || rc="0 but no signature"
	if [ "$rc" != 0 ]; then
		cat "$work/preflight.log" >&2
		echo "postfix-opendkim.sh: opendkim -t failed (exit $rc) signing" \
			"for $dom; its reason is in syslog (LogWhy yes)," \
			"$work/preflight.log has the rest" >&2
		exit 1
	fi
done

# OpenDKIM first: Postfix's milter_default_action would defer otherwise.
opendkim -x "$work/opendkim.conf" -f >"$work/opendkim.log" 2>&1 &
echo $! >"$work/opendkim.pid"
for _ in $(seq 50); do
	(echo >/dev/tcp/127.0.0.1/$milter) 2>/dev/null && break
	sleep 0.1
done

postfix -c "$work/etc" check
postfix -c "$work/etc" start >"$work/postfix-start.log" 2>&1 || {
	echo "postfix-opendkim.sh: postfix start failed; see" \
		"$work/maillog and $work/postfix-start.log" >&2
	cat "$work/postfix-start.log" >&2
	stop
	exit 1
}
for _ in $(seq 100); do
	(echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
	sleep 0.1
done
(echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null || {
	echo "postfix-opendkim.sh: postfix is not listening; see" \
		"$work/maillog and $work/postfix-start.log" >&2
	stop
	exit 1
}
echo "$port"
