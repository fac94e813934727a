#!/bin/bash
# intake.sh - how fast does an SMTP server take mail in?
#
# Sends 2 KB messages to a running server with waxseal-bench blast
# (pipelined, persistent connections) and with Postfix's smtp-source
# (persistent connections, no pipelining), each over 50 and over 200
# connections, and prints one table: tool, connections, messages, seconds,
# msgs/s. Every run is bounded by the message count and by a time limit.
#
# usage: bench/intake.sh [-m MESSAGES] [-t SECONDS] [-b BENCH] [--allow-remote]
#                        [HOST:PORT]
#   HOST:PORT   server to load (default 127.0.0.1:2525); loopback only
#               unless --allow-remote
#   -m          messages per run (default 50000)
#   -t          time limit per run in seconds (default 120)
#   -b          the waxseal-bench binary (default: $WAXSEAL_BENCH, then
#               build/bench/waxseal-bench beside this script, then PATH)
set -u

messages=50000
limit=120
bench=${WAXSEAL_BENCH:-}
allow_remote=
target=127.0.0.1:2525
size=2048
source_bin=/usr/sbin/smtp-source

# usage - print the synopsis and exit with the given status.
usage() {
	cat <<'USAGE'
usage: bench/intake.sh [-m MESSAGES] [-t SECONDS] [-b BENCH] [--allow-remote]
                       [HOST:PORT]
  HOST:PORT       server to load (default 127.0.0.1:2525)
  -m MESSAGES     messages per run (default 50000)
  -t SECONDS      time limit per run (default 120)
  -b BENCH        waxseal-bench binary (default $WAXSEAL_BENCH, then
                  build/bench/waxseal-bench in the source tree, then PATH)
  --allow-remote  allow a target outside loopback
USAGE
	exit "$1"
}

while [ $# -gt 0 ]; do
	case $1 in
	-m) messages=$2; shift 2 ;;
	-t) limit=$2; shift 2 ;;
	-b) bench=$2; shift 2 ;;
	--allow-remote) allow_remote=--allow-remote; shift ;;
	-h|--help) usage 0 ;;
	-*) echo "intake.sh: unknown option $1" >&2; usage 2 ;;
	*) target=$1; shift ;;
	esac
done

case $messages in ''|*[!0-9]*) echo "intake.sh: bad -m" >&2; exit 2 ;; esac
case $limit in ''|*[!0-9]*) echo "intake.sh: bad -t" >&2; exit 2 ;; esac

# smtp-source knows no address policy: keep it on loopback ourselves.
host=${target%:*}
host=${host#[}
host=${host%]}
case $host in
127.*|::1|localhost) ;;
*)
	if [ -z "$allow_remote" ]; then
		echo "intake.sh: refusing non-loopback $target" \
			"without --allow-remote" >&2
		exit 2
	fi ;;
esac

if [ -z "$bench" ]; then
	here=$(cd "$(dirname "$0")" && pwd)
	for b in "$here/../build/bench/waxseal-bench" \
		 "$(command -v waxseal-bench 2>/dev/null)"; do
		if [ -n "$b" ] && [ -x "$b" ]; then
			bench=$b
			break
		fi
	done
fi
if [ -z "$bench" ] || [ ! -x "$bench" ]; then
	echo "intake.sh: waxseal-bench not found; build it or use -b" >&2
	exit 2
fi

rows=()

# json_num - a number field from blast's JSON report.
json_num() {
	sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p" | head -n 1
}

# run_blast - one blast run; adds a row.
run_blast() {
	local conns=$1 out secs acc rate
	out=$("$bench" blast --target "$target" $allow_remote \
		--connections "$conns" --messages "$messages" \
		--duration "$limit" --size "$size" --pipelining --json \
		2>/dev/null)
	secs=$(printf '%s\n' "$out" | json_num elapsed_s)
	acc=$(printf '%s\n' "$out" | json_num accepted)
	rate=$(printf '%s\n' "$out" | json_num accepted_per_s)
	secs=$(awk -v s="${secs:-0}" 'BEGIN { printf "%.3f", s }')
	rows+=("waxseal-bench-blast $conns ${acc:-0} $secs ${rate:-0}")
}

# run_source - one smtp-source run, timed from outside; adds a row.
run_source() {
	local conns=$1 t0 t1 rc secs rate sent
	t0=$(date +%s.%N)
	timeout "$limit" "$source_bin" -d -s "$conns" -l "$size" \
		-m "$messages" "$target" >/dev/null 2>&1
	rc=$?
	t1=$(date +%s.%N)
	secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')

	# smtp-source says nothing on success; on failure we know no count.
	sent=$messages
	[ $rc -eq 0 ] || sent="failed(rc=$rc)"
	rate=$(awk -v n="$messages" -v s="$secs" -v rc="$rc" \
		'BEGIN { if (rc || s <= 0) print "-"; else printf "%.1f", n / s }')
	rows+=("smtp-source $conns $sent $secs $rate")
}

for c in 50 200; do
	run_blast "$c"
	if [ -x "$source_bin" ]; then
		run_source "$c"
	else
		rows+=("smtp-source $c - - absent")
	fi
done

echo "intake of $target, ${size}-byte messages, $messages per run"
printf '%-20s %11s %14s %9s %10s\n' tool connections messages seconds msgs/s
for r in "${rows[@]}"; do
	# shellcheck disable=SC2086
	printf '%-20s %11s %14s %9s %10s\n' $r
done
