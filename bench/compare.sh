#!/bin/bash
# compare.sh - waxseal against Postfix + OpenDKIM on one scenario, in one
# invocation, with the same sinks and the same DKIM keys; prints a
# Markdown table.
#
# usage: bench/compare.sh [-s SCENARIO] [-m MESSAGES] [-p SINKPORT]
#                         [-k DIR] [BUILD_DIR]
#   -s SCENARIO  default bench/scenarios/newsletter-rsa.scenario
#   -m MESSAGES  messages for both relays (default 3000)
#   -p SINKPORT  the sinks' port on 127.0.0.10, ... (default: a free one)
#   -k DIR       keep the work files in DIR (default: a new directory
#                under /var/tmp, removed at the end)
#   BUILD_DIR    the CMake build tree (default ./build)
#
# What it does:
#   0. waxseal sign-bench -d 1 -r 3 -j NCPU                (the signing
#      ceiling: a bare private-key loop on every core; measured again
#      after step 1, and waxseal is compared with the mean of the two,
#      because this machine's speed drifts over minutes)
#   1. waxseal-bench run SCENARIO --keep R --sink-port P   (waxseal; it
#      writes the keys, KeyTable, SigningTable and transport into R)
#   2. bench/postfix-opendkim.sh start W R                 (prints PORT)
#   3. waxseal-bench run SCENARIO --keep R --sink-port P --target
#      127.0.0.1:PORT                                      (same keys, sinks)
#   4. bench/postfix-opendkim.sh stop W                    (also on any exit)
# Every step has a time limit. Needs root (Postfix); installs postfix,
# opendkim and opendkim-tools with apt-get only when they are missing.
# Exit status: 0 when both runs completed, 1 otherwise, 2 for usage.
set -eu

invocation="$0 $*"
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)

usage() {
	sed -n 2,24p "$0" >&2
	exit 2
}

scenario=$top/bench/scenarios/newsletter-rsa.scenario
messages=3000
sink_port=
keep=
while getopts s:m:p:k:h opt; do
	case $opt in
	s) scenario=$OPTARG ;;
	m) messages=$OPTARG ;;
	p) sink_port=$OPTARG ;;
	k) keep=$OPTARG ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -le 1 ] || usage
build=${1:-./build}

case $messages in
'' | *[!0-9]*) echo "compare.sh: -m wants a number" >&2; exit 2 ;;
esac
[ -f "$scenario" ] || { echo "compare.sh: no scenario $scenario" >&2; exit 2; }
scenario=$(cd "$(dirname "$scenario")" && pwd)/$(basename "$scenario")
[ -d "$build" ] || { echo "compare.sh: no build tree $build" >&2; exit 2; }
build=$(cd "$build" && pwd)
bench=$build/bench/waxseal-bench
[ -x "$bench" ] && [ -x "$build/relay/waxseal" ] || {
	echo "compare.sh: $bench or $build/relay/waxseal missing; build first" >&2
	exit 2
}
[ "$(id -u)" = 0 ] || { echo "compare.sh: needs root (Postfix)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "compare.sh: needs python3" >&2; exit 2; }

# Work files: on disk (/var/tmp), like a real spool and queue.
if [ -n "$keep" ]; then
	mkdir -p "$keep"
	base=$(cd "$keep" && pwd)
else
	base=$(mktemp -d /var/tmp/waxseal-compare.XXXXXX)
fi
# mktemp's 0700 would keep Postfix's daemons (user postfix) out of W.
chmod 755 "$base"
run=$base/run
pfx=$base/postfix
mkdir -p "$run"
postfix_started=

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$postfix_started" ]; then
		timeout 60 bash "$here/postfix-opendkim.sh" stop "$pfx" || true
	fi
	if [ -z "$keep" ]; then
		rm -rf "$base"
	else
		echo "compare.sh: work files kept in $base" >&2
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# One port free on every sink address (127.0.0.10 .. 127.0.0.209).
if [ -z "$sink_port" ]; then
	sink_port=$(timeout 30 python3 - <<'PY'
import socket
for _ in range(200):
    s = socket.socket(); s.bind(("127.0.0.10", 0)); p = s.getsockname()[1]
    try:
        for i in range(11, 210):
            t = socket.socket(); t.bind(("127.0.0.%d" % i, p)); t.close()
    except OSError:
        s.close(); continue
    s.close(); print(p); break
PY
)
fi
[ -n "$sink_port" ] || { echo "compare.sh: no free sink port" >&2; exit 1; }

status=0

# The machine's signing ceiling, before the relays load it.
ncpu=$(nproc)
cmd_sign="$build/relay/waxseal sign-bench -d 1 -r 3 -j $ncpu"
echo "compare.sh: signing ceiling: $cmd_sign" >&2
timeout 600 $cmd_sign >"$base/sign.txt" 2>"$base/sign.err" || {
	echo "compare.sh: sign-bench failed, see $base/sign.err" >&2
	status=1
}
if grep -q '= *rsa' "$scenario"; then
	sign_key=rsa-2048
else
	sign_key=ed25519
fi

cmd_wax="$bench run $scenario --messages $messages --keep $run --sink-port $sink_port --json"
echo "compare.sh: waxseal: $cmd_wax" >&2
timeout 600 $cmd_wax >"$base/waxseal.json" 2>"$base/waxseal.err" || {
	echo "compare.sh: the waxseal run failed (exit $?), see $base/waxseal.err" >&2
	tail -5 "$base/waxseal.err" >&2
	status=1
}

# The ceiling once more, right after waxseal's run.
echo "compare.sh: signing ceiling again: $cmd_sign" >&2
timeout 600 $cmd_sign >"$base/sign2.txt" 2>>"$base/sign.err" || {
	echo "compare.sh: sign-bench failed, see $base/sign.err" >&2
	status=1
}

echo "compare.sh: bench/postfix-opendkim.sh start $pfx $run" >&2
postfix_started=1
port=$(timeout 900 bash "$here/postfix-opendkim.sh" start "$pfx" "$run") || {
	echo "compare.sh: Postfix + OpenDKIM did not start" >&2
	exit 1
}
cmd_pfx="$bench run $scenario --messages $messages --keep $run --sink-port $sink_port --target 127.0.0.1:$port --json"
echo "compare.sh: postfix: $cmd_pfx" >&2
timeout 900 $cmd_pfx >"$base/postfix.json" 2>"$base/postfix.err" || {
	echo "compare.sh: the Postfix run failed (exit $?), see $base/postfix.err" >&2
	tail -5 "$base/postfix.err" >&2
	status=1
}
timeout 60 bash "$here/postfix-opendkim.sh" stop "$pfx" || true
postfix_started=

# Postfix's own view of the run, from its maillog.
sent=$(grep -c 'status=sent' "$pfx/maillog" 2>/dev/null || true)
deferred=$(grep -c 'status=deferred' "$pfx/maillog" 2>/dev/null || true)
rejected=$(grep -c 'milter-reject' "$pfx/maillog" 2>/dev/null || true)

mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
cpu=$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)
pfx_version=$(postconf -d mail_version 2>/dev/null | sed 's/.*= //')
dkim_version=$(opendkim -V 2>/dev/null | sed -n 's/.*Filter v//p' | head -1)
wax_version=$("$build/relay/waxseal" --version 2>/dev/null | head -1)

SIGN_TXT=$base/sign.txt SIGN2_TXT=$base/sign2.txt SIGN_KEY=$sign_key NCPU=$ncpu \
	WAX_JSON=$base/waxseal.json PFX_JSON=$base/postfix.json \
	SCENARIO=$(basename "$scenario" .scenario) MESSAGES=$messages \
	WAX_NAME="$wax_version" PFX_NAME="Postfix $pfx_version + OpenDKIM $dkim_version" \
	timeout 30 python3 - <<'PY'
import json, os

def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def num(v, fmt):
    return "n/a" if v is None else fmt.format(v)

print("Scenario `%s`, %s messages per relay\n" % (os.environ["SCENARIO"], os.environ["MESSAGES"]))
print("| relay | intake msgs/s | end-to-end msgs/s | p99 accept ms | DKIM pass / verified | at sinks / accepted | complete |")
print("|---|---:|---:|---:|---:|---:|---|")
for name, path in ((os.environ["WAX_NAME"], os.environ["WAX_JSON"]),
                   (os.environ["PFX_NAME"], os.environ["PFX_JSON"])):
    r = load(path)
    if r is None:
        print("| %s | failed | | | | | no |" % name)
        continue
    d = r.get("dkim") or {}
    m = r.get("messages") or {}
    s = r.get("sink") or {}
    print("| %s | %s | %s | %s | %s / %s | %s / %s | %s |" % (
        name, num(r.get("intake_per_s"), "{:,.0f}"),
        num(r.get("end_to_end_per_s"), "{:,.0f}"),
        num(r.get("p99_accept_ms"), "{:.1f}"),
        num(d.get("pass"), "{:.0f}"), num(d.get("verified"), "{:.0f}"),
        num(s.get("messages"), "{:.0f}"), num(m.get("accepted"), "{:.0f}"),
        "yes" if r.get("complete") else "no"))

# The ceiling: sign-bench's raw column for the scenario's key on every
# core, before and after waxseal's run, and waxseal's end-to-end rate
# against their mean.
def ceiling(path):
    try:
        for line in open(path):
            f = line.split()
            if len(f) >= 6 and f[0] == os.environ["SIGN_KEY"] and \
                    f[1] == os.environ["NCPU"]:
                return float(f[5])
    except (OSError, ValueError):
        pass
    return None

raws = [r for r in (ceiling(os.environ["SIGN_TXT"]),
                    ceiling(os.environ["SIGN2_TXT"])) if r]
w = load(os.environ["WAX_JSON"]) or {}
e2e = w.get("end_to_end_per_s")
if raws:
    raw = sum(raws) / len(raws)
    print("\nSigning ceiling: %s, bare private-key loop on %s threads: "
          "%s signatures/s (before and after waxseal's run); waxseal end "
          "to end: %s" % (
              os.environ["SIGN_KEY"], os.environ["NCPU"],
              " and ".join(num(r, "{:,.0f}") for r in raws),
              "n/a" if e2e is None else "%.0f%% of their mean" %
              (100 * e2e / raw)))
else:
    print("\nSigning ceiling: not measured (see sign.err)")
PY

cat <<EOF

Machine: $(nproc) CPUs ($cpu), $mem memory, kernel $(uname -r)

Postfix maillog: $sent sent, $deferred deferred, $rejected milter rejects

Commands (R = $run, W = $pfx):

    $invocation
    $cmd_sign
    $cmd_wax
    $cmd_sign
    bench/postfix-opendkim.sh start $pfx $run    # printed $port
    $cmd_pfx
    bench/postfix-opendkim.sh stop $pfx
EOF
exit "$status"
