#!/usr/bin/env bash
# Two or more ppsp tracker binaries (or settings) against each other, measured in short
# interleaved wrk runs, so that a host whose speed drifts over minutes slows every
# candidate alike.
#
#   scripts/bench-ab.sh [--rounds N] [--seconds S] [--method FIND|KEEPALIVE] \
#       NAME=BINARY[:CONNECTION_THREADS] NAME=BINARY[:CONNECTION_THREADS] ...
#
# Each candidate is started on a free loopback port (with `[server] connection_threads`
# set when given, and a day's session idle timeout), gets 20,000 peers in 200 swarms from
# `ppsp bench fill` and one session of its own from docs/wrk/setup-session.sh. Then each
# round runs `wrk -t1 -c64 -dS` with docs/wrk/ppsp-xml.lua against every candidate in
# turn; the last line gives each candidate's mean rate over the rounds. Needs wrk and curl
# (Debian packages) and the release `ppsp` (for the fill). Not part of the test command.
# Every tracker is stopped by its PID at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=8
seconds=2
method=FIND
candidates=()
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        --seconds) seconds="$2"; shift 2 ;;
        --method) method="$2"; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *=*) candidates+=("$1"); shift ;;
        *) echo "unknown argument: $1 (candidates are NAME=BINARY[:THREADS])" >&2; exit 2 ;;
    esac
done
[ ${#candidates[@]} -ge 2 ] || { echo "give at least two candidates" >&2; exit 2; }
for tool in wrk curl; do
    command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install $tool)" >&2; exit 2; }
done
fill=target/release/ppsp
[ -x "$fill" ] || cargo build --release --locked -p ppsp

# shellcheck source=scripts/lib/started.sh
source scripts/lib/started.sh

names=()
urls=()
sessions=()
for candidate in "${candidates[@]}"; do
    name=${candidate%%=*}
    spec=${candidate#*=}
    binary=${spec%%:*}
    threads=""
    [[ $spec == *:* ]] && threads=${spec#*:}
    [ -x "$binary" ] || { echo "$name: $binary is not an executable" >&2; exit 2; }
    {
        if [ -n "$threads" ]; then printf '[server]\nconnection_threads = %s\n' "$threads"; fi
        printf '[tracker]\nsession_idle_timeout_secs = 86400\n'
    } > "$work/$name.toml"
    "$binary" --quiet tracker --config "$work/$name.toml" --listen 127.0.0.1:0 \
        > "$work/$name.out" 2> "$work/$name.err" &
    pids+=($!)
    for _ in $(seq 100); do
        grep -q "listening on http://" "$work/$name.out" && break
        sleep 0.1
    done
    address=$(sed -n 's|^listening on http://||p' "$work/$name.out" | head -n1)
    [ -n "$address" ] || { echo "$name did not start:" >&2; cat "$work/$name.err" >&2; exit 1; }
    url="http://$address/"
    "$fill" --quiet bench fill --tracker "$url" --peers 20000 --swarms 200 --format xml \
        --connections 64 > /dev/null
    session=$(docs/wrk/setup-session.sh "$url" 1 fill-swarm-0)
    names+=("$name")
    urls+=("$url")
    sessions+=("$session")
done

echo "machine: $(nproc) CPUs; $(uptime | sed 's/.*load average/load average/'); $(date -u +%H:%M) UTC"
echo "wrk -t1 -c64 -d${seconds}s, PPSP_METHOD=$method, $rounds rounds"
declare -A sum
for name in "${names[@]}"; do sum[$name]=0; done
for round in $(seq "$rounds"); do
    line="round $round:"
    for i in "${!names[@]}"; do
        name=${names[$i]}
        rate=$(eval "${sessions[$i]}"; PPSP_METHOD=$method wrk -t1 -c64 -d"${seconds}s" \
            -s docs/wrk/ppsp-xml.lua "${urls[$i]}" | awk '/Requests\/sec/ { print $2 }')
        sum[$name]=$(awk -v a="${sum[$name]}" -v b="$rate" 'BEGIN { print a + b }')
        line="$line $name=$rate"
    done
    echo "$line"
done
line="mean:"
for name in "${names[@]}"; do
    line="$line $name=$(awk -v s="${sum[$name]}" -v n="$rounds" 'BEGIN { printf "%.0f", s / n }')"
done
echo "$line"
echo "load after: $(uptime | sed 's/.*load average/load average/')"
