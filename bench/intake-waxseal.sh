#!/bin/bash
# intake-waxseal.sh - measure waxseal's intake on this machine.
#
# Starts waxseal from the build tree with a spool in a temporary directory
# on the same disk as the source (fdatasync on, as always), on a free
# loopback port, once per I/O backend; drives it with bench/intake.sh
# (waxseal-bench blast and Postfix's smtp-source, 50 and 200 connections,
# 2 KB messages); then prints the group-commit ratio from the daemon's
# counters. With --perf it also records where waxseal's CPU time goes
# during one blast run (perf report in perf-intake.txt).
#
# usage: bench/intake-waxseal.sh [-m MESSAGES] [--perf] [BUILD_DIR]
set -u
here=$(cd "$(dirname "$0")" && pwd)
messages=50000
perf=
build=$here/../build
while [ $# -gt 0 ]; do
	case $1 in
	-m) messages=$2; shift 2 ;;
	--perf) perf=1; shift ;;
	-h|--help) sed -n 2,13p "$0"; exit 0 ;;
	*) build=$1; shift ;;
	esac
done
waxseal=$build/relay/waxseal
bench=$build/bench/waxseal-bench
[ -x "$waxseal" ] && [ -x "$bench" ] || {
	echo "intake-waxseal.sh: build first (cmake --build $build)" >&2
	exit 2
}

work=$(mktemp -d "$here/../.bench-XXXXXX")
trap 'kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

for backend in io_uring libuv; do
	rm -rf "$work/spool"
	cat >"$work/waxseal.conf" <<CONF
smtpd_listen = 127.0.0.1:$port
queue_directory = $work/spool
io_backend = $backend
log_level = info
myhostname = bench.test
# Intake only: delivery stays held, and no DNS server is ever asked.
defer_transports = smtp
dns_servers = 127.0.0.1:9
delivery_log =
CONF
	"$waxseal" run -c "$work/waxseal.conf" 2>"$work/log" &
	pid=$!
	for _ in $(seq 50); do
		(echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
		sleep 0.1
	done
	echo "== waxseal, io_backend = $backend, $(nproc) cores, $messages messages per run"
	if [ -n "$perf" ] && [ "$backend" = io_uring ]; then
		perf record -g -o "$work/perf.data" -p "$pid" 2>/dev/null &
		perfpid=$!
		"$bench" blast --target 127.0.0.1:$port --connections 50 \
			--messages "$messages" --duration 120 >/dev/null 2>&1
		kill -INT $perfpid; wait $perfpid 2>/dev/null
		perf report -i "$work/perf.data" --no-children -g none \
			--percent-limit 0.5 --stdio 2>/dev/null \
			>"$here/../perf-intake.txt"
		echo "perf report in perf-intake.txt"
	fi
	"$here/intake.sh" -m "$messages" -b "$bench" 127.0.0.1:$port
	kill -TERM "$pid"
	wait "$pid"
	# The daemon's last line counts durable messages and fdatasyncs.
	grep -o 'stopped messages=[0-9]* fsyncs=[0-9]*' "$work/log" |
		awk -F'[= ]' '{ printf "group commit: %d messages, %d fdatasync, %.1f messages per fdatasync\n", $3, $5, $3 / ($5 ? $5 : 1) }'
done
