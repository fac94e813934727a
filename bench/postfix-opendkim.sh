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

stop() {
	if [ -f "$work/etc/main.cf" ]; then
		postfix -c "$work/etc" stop 2>/dev/null || true
	fi
	if [ -f "$work/opendkim.pid" ]; then
		kill "$(cat "$work/opendkim.pid")" 2>/dev/null || true
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
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
fi

mkdir -p "$work/etc" "$work/queue" "$work/data"
work=$(cd "$work" && pwd)
chmod 755 "$work"
chown postfix "$work/data"
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

cat >"$work/opendkim.conf" <<CONF
# written by bench/postfix-opendkim.sh
Syslog                  no
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

# OpenDKIM first: Postfix's milter_default_action would defer otherwise.
opendkim -x "$work/opendkim.conf" -f >"$work/opendkim.log" 2>&1 &
echo $! >"$work/opendkim.pid"
for _ in $(seq 50); do
	(echo >/dev/tcp/127.0.0.1/$milter) 2>/dev/null && break
	sleep 0.1
done

postfix -c "$work/etc" check
postfix -c "$work/etc" start >"$work/postfix-start.log" 2>&1
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
