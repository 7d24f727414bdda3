#!/usr/bin/env bash
# The mixed `ppsp bench` workload against the trivial hyper server, and the open loop at
# half of its rate, in one run on this machine.
#
#   scripts/bench-mixed.sh [--rounds N] [--duration SECS] [--tracker BINARY] [--bench BINARY]
#
# Starts `ppsp tracker` (in-memory default, or the given binary) and ppsp-bench-hello on
# free loopback ports, then each round runs, one after another:
#
#   hello     wrk -t1 -c64 against ppsp-bench-hello (fixed body, keep-alive)
#   closed    ppsp bench --swarms 10 (100 peers, 64 connections; FIND, STAT_REPORT with a
#             chunk map, KEEPALIVE in turn), a closed loop
#   open      ppsp bench --swarms 10 --peers 400 --rate R, R half of this round's closed
#             rate: latency counts from each request's due time
#
# and prints per round the rates, the closed loop's ratio to hello, and the open loop's
# achieved rate with the p50 and p99 of FIND, the highest p99 of the three loop methods and
# the p99 of the load generator's own delay before sending (`send delay`, part of every
# latency), and the CPU time the hypervisor took from the machine during the open loop
# (`steal ms`, from /proc/stat: on a shared virtual machine a bad tail lines up with it).
# The load generator is `ppsp bench` of the release build (or --bench). Needs wrk (Debian
# package). Not part of the test command. Both servers are stopped by their PIDs.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3
duration=10
tracker=target/release/ppsp
bench=target/release/ppsp
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        --duration) duration="$2"; shift 2 ;;
        --tracker) tracker="$2"; shift 2 ;;
        --bench) bench="$2"; shift 2 ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
command -v wrk >/dev/null || { echo "wrk is missing (apt-get install wrk)" >&2; exit 2; }
if [ ! -x target/release/ppsp ] || [ ! -x target/release/ppsp-bench-hello ]; then
    cargo build --release --locked -p ppsp -p ppsp-bench-hello
fi
for binary in "$tracker" "$bench"; do
    [ -x "$binary" ] || { echo "$binary is not an executable" >&2; exit 2; }
done

# shellcheck source=scripts/lib/started.sh
source scripts/lib/started.sh
# shellcheck source=scripts/lib/steal.sh
source scripts/lib/steal.sh

"$tracker" --quiet tracker --listen 127.0.0.1:0 > "$work/tracker.out" 2> "$work/tracker.err" &
pids+=($!)
target/release/ppsp-bench-hello > "$work/hello.out" 2> "$work/hello.err" &
pids+=($!)
for _ in $(seq 100); do
    grep -q "listening on http://" "$work/tracker.out" && grep -q "listening on" "$work/hello.out" && break
    sleep 0.1
done
address=$(sed -n 's|^listening on http://||p' "$work/tracker.out" | head -n1)
hello=$(sed -n 's|^listening on ||p' "$work/hello.out" | head -n1)
[ -n "$address" ] || { echo "the tracker did not start:" >&2; cat "$work/tracker.err" >&2; exit 1; }
[ -n "$hello" ] || { echo "ppsp-bench-hello did not start:" >&2; cat "$work/hello.err" >&2; exit 1; }
url="http://$address/"

# The `throughput` figure of a ppsp bench report.
throughput() { awk '/throughput/ { for (i = 1; i < NF; i++) if ($i == "throughput") print $(i + 1) }' "$1"; }
# The `errors` figure of a ppsp bench report.
errors() { awk '$1 == "requests" { print $4 }' "$1"; }
# Column N (2 requests, 4 p50, 6 p99) of a method's line.
column() { awk -v m="$2" -v n="$3" '$1 == m { print $n }' "$1"; }

echo "bench-mixed: $rounds rounds of ${duration}s; $(date -u '+%Y-%m-%d %H:%M UTC'); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-5s %10s %10s %8s %10s %10s %10s %10s %10s %9s %7s\n' round "hello/s" "closed/s" "/ hello" \
    "open/s" "FIND p50" "FIND p99" "worst p99" "send p99" "steal ms" errors
for round in $(seq "$rounds"); do
    hello_rate=$(wrk -t1 -c64 -d"${duration}s" "$hello" | awk '/Requests\/sec/ { print $2 }')
    "$bench" --quiet bench --tracker "$url" --swarms 10 --duration "$duration" > "$work/closed"
    closed=$(throughput "$work/closed")
    rate=$(awk -v c="$closed" 'BEGIN { printf "%d", c / 2 }')
    stolen_before=$(stolen_ms)
    "$bench" --quiet bench --tracker "$url" --swarms 10 --duration "$duration" --peers 400 \
        --rate "$rate" > "$work/open"
    stolen=$(( $(stolen_ms) - stolen_before ))
    open=$(throughput "$work/open")
    worst=0
    for method in FIND STAT_REPORT KEEPALIVE; do
        worst=$(awk -v a="$worst" -v b="$(column "$work/open" "$method" 6)" 'BEGIN { print (b > a ? b : a) }')
    done
    # The `send delay` row has two words of label and no error count: its p99 is field 7.
    printf '%-5s %10.0f %10.0f %8.2f %10.0f %10s %10s %10s %10s %9s %7s\n' "$round" "$hello_rate" \
        "$closed" "$(awk -v c="$closed" -v h="$hello_rate" 'BEGIN { print c / h }')" "$open" \
        "$(column "$work/open" FIND 4)" "$(column "$work/open" FIND 6)" "$worst" \
        "$(column "$work/open" send 7)" "$stolen" \
        "$(( $(errors "$work/closed") + $(errors "$work/open") ))"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
