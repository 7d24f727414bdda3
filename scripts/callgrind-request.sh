#!/usr/bin/env bash
# Instructions per request of the whole tracker, hyper, tokio and allocator included, counted
# by callgrind: the user-space side of a request end to end, where
# scripts/callgrind-counts.sh counts single operations.
#
#   scripts/callgrind-request.sh [--load find|mixed] [--seconds S] [--top N]
#
# Starts the release `ppsp tracker` under `valgrind --tool=callgrind` on a free loopback
# port, fills it (find: 2,000 peers in 20 swarms through `ppsp bench fill` and one session
# from docs/wrk/setup-session.sh; mixed: a warm-up run of `ppsp bench`), zeroes the counts,
# drives it for S seconds (default 10) with `wrk -t1 -c16` and docs/wrk/ppsp-xml.lua (find,
# the FIND of scripts/bench-compare.sh) or `ppsp bench --swarms 10` (mixed: FIND,
# STAT_REPORT and KEEPALIVE in turn), dumps the counts, and prints the instructions per
# request and the N (default 25) functions with the most inclusive instructions per
# request. The kernel's side (system calls, TCP on loopback) is not counted. Under
# callgrind the tracker runs some fifty times slower and SHA-256 takes its AVX path, not
# SHA-NI, so token checks weigh more than on the host. Needs wrk, curl and valgrind
# (Debian packages). Not part of the test command. The tracker is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."

load=find
seconds=10
top=25
while [ $# -gt 0 ]; do
    case "$1" in
        --load) load="$2"; shift 2 ;;
        --seconds) seconds="$2"; shift 2 ;;
        --top) top="$2"; shift 2 ;;
        -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
case "$load" in find | mixed) ;; *) echo "--load is find or mixed" >&2; exit 2 ;; esac
for value in "$seconds" "$top"; do
    case "$value" in '' | *[!0-9]* | 0) echo "--seconds and --top take positive integers" >&2; exit 2 ;; esac
done
for tool in wrk curl valgrind callgrind_control callgrind_annotate; do
    command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install wrk curl valgrind)" >&2; exit 2; }
done
cargo build --release --locked -p ppsp >&2
ppsp=target/release/ppsp

# shellcheck source=scripts/lib/started.sh
source scripts/lib/started.sh

printf '[tracker]\nsession_idle_timeout_secs = 86400\n' > "$work/ppsp.toml"
valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.%p" \
    "$ppsp" --quiet tracker --config "$work/ppsp.toml" --listen 127.0.0.1:0 \
    > "$work/tracker.out" 2> "$work/tracker.err" &
tracker=$!
pids+=("$tracker")
for _ in $(seq 600); do
    grep -q "^listening on http://" "$work/tracker.out" && break
    kill -0 "$tracker" 2>/dev/null || { cat "$work/tracker.err" >&2; exit 1; }
    sleep 0.2
done
address=$(sed -n 's|^listening on http://||p' "$work/tracker.out" | head -n1)
[ -n "$address" ] || { echo "the tracker did not start within 120 s" >&2; exit 1; }
url="http://$address/"

if [ "$load" = find ]; then
    "$ppsp" --quiet bench fill --tracker "$url" --peers 2000 --swarms 20 --format xml \
        --connections 16 >/dev/null
    eval "$(docs/wrk/setup-session.sh "$url" 1 fill-swarm-0)"
else
    "$ppsp" --quiet bench --tracker "$url" --swarms 10 --duration 3 >/dev/null
fi

callgrind_control --zero "$tracker" >/dev/null
if [ "$load" = find ]; then
    PPSP_METHOD=FIND wrk -t1 -c16 -d"${seconds}s" -s docs/wrk/ppsp-xml.lua "$url" \
        > "$work/load.txt"
    requests=$(awk '/ requests in / { print $1 }' "$work/load.txt")
    bad=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$work/load.txt")
    [ -z "$bad" ] || { echo "wrk saw $bad answers that were not 200" >&2; exit 1; }
else
    "$ppsp" --quiet bench --tracker "$url" --swarms 10 --duration "$seconds" > "$work/load.txt"
    # Set-up and tear-down (CONNECT, JOIN, LEAVE, DISCONNECT) come on top of the loop's
    # requests; all of them were counted.
    requests=$(awk '$1 ~ /^[A-Z_]+$/ && $2 ~ /^[0-9]+$/ { s += $2 } END { print s }' "$work/load.txt")
    errors=$(awk '$1 == "requests" { print $4 }' "$work/load.txt")
    [ "$errors" = 0 ] || { echo "ppsp bench saw $errors errors" >&2; exit 1; }
fi
callgrind_control --dump "$tracker" >/dev/null
out=$(ls "$work"/callgrind.*.1)

total=$(callgrind_annotate "$out" | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
echo "load $load, ${seconds}s: $requests requests, $total instructions, $((total / requests)) per request"
echo
printf '%12s  %s\n' "per request" "function (inclusive)"
callgrind_annotate --inclusive=yes "$out" |
    awk -v n="$requests" -v top="$top" '
        /^-+$/ { rule++; next }
        rule >= 4 && $1 ~ /^[0-9,]+$/ && $3 != "PROGRAM" {
            count = $1; gsub(",", "", count)
            sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, "")
            sub(/ \[[^]]*\]$/, "")
            # `file:function`; a function inlined from several files has a line per file,
            # the first of them (the largest) for the whole function.
            function_name = substr($0, index($0, ":") + 1)
            if (seen[function_name]++) next
            $0 = function_name
            printf "%12d  %s\n", count / n, $0
            if (++shown == top) exit
        }'
