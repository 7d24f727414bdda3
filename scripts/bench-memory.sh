#!/usr/bin/env bash
# Resident memory per peer of a release tracker filled over HTTP.
#
#   scripts/bench-memory.sh [--peers N] [--swarms N] [--format json|xml] [--settle SECS]
#
# Builds the release binary, starts `ppsp tracker` on a free loopback port (the system picks
# it; the port is read from the readiness line), records its VmRSS, registers the peers with
# `ppsp bench fill` (one 20-byte PeerID, one IPv4 address and one swarm each, connections
# spread over the source addresses 127.0.0.1 to 127.0.0.255), records VmRSS again, and
# prints bytes per peer: total RSS / peers and (after - before) / peers. With --settle, it
# measures once more after that many seconds, when answers kept for retransmissions have
# expired. The tracker runs with a session idle timeout long enough that no peer expires
# during the run; it is stopped (by its PID) at the end. Not part of the test command.
set -euo pipefail
cd "$(dirname "$0")/.."

peers=1000000
swarms=10000
format=json
settle=0
while [ $# -gt 0 ]; do
    case "$1" in
        --peers) peers="$2"; shift 2 ;;
        --swarms) swarms="$2"; shift 2 ;;
        --format) format="$2"; shift 2 ;;
        --settle) settle="$2"; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

cargo build --release --locked -p ppsp >&2
ppsp=target/release/ppsp

# One file descriptor per connection on both sides; the fill uses a few hundred.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

work=$(mktemp -d)
tracker_pid=""
cleanup() {
    if [ -n "$tracker_pid" ]; then
        kill "$tracker_pid" 2>/dev/null || true
        wait "$tracker_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/tracker.toml" <<'EOF'
[tracker]
# A day: no peer may expire while the fill and the measurements run.
session_idle_timeout_secs = 86400
# The fill comes from a few hundred loopback addresses; the default cap (4,096 sessions
# per address) would refuse most of a million peers.
max_sessions_per_address = 1000000
EOF

"$ppsp" --quiet tracker --listen 127.0.0.1:0 --config "$work/tracker.toml" \
    > "$work/tracker.out" 2> "$work/tracker.err" &
tracker_pid=$!

url=""
for _ in $(seq 1 600); do
    url=$(sed -n 's/^listening on \(http:.*\)$/\1/p' "$work/tracker.out" | head -n 1)
    [ -n "$url" ] && break
    if ! kill -0 "$tracker_pid" 2>/dev/null; then
        echo "tracker exited before its readiness line:" >&2
        cat "$work/tracker.err" >&2
        exit 1
    fi
    sleep 0.1
done
if [ -z "$url" ]; then
    echo "no readiness line from the tracker within 60 s" >&2
    exit 1
fi

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$tracker_pid/status"; }
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$tracker_pid/status"; }

echo "machine: $(nproc) CPUs, load before: $(uptime | sed 's/.*load average/load average/')"
echo "tracker: $ppsp pid $tracker_pid at $url"
before=$(rss_kib)
echo "RSS before fill: $before KiB"

"$ppsp" --quiet bench fill --tracker "$url/" --peers "$peers" --swarms "$swarms" --format "$format"

report() {
    local label="$1" rss
    rss=$(rss_kib)
    awk -v label="$label" -v rss="$rss" -v before="$before" -v peers="$peers" 'BEGIN {
        printf "%s: RSS %d KiB (%.1f MiB)  bytes/peer total %.0f  bytes/peer added %.0f\n",
            label, rss, rss / 1024, rss * 1024 / peers, (rss - before) * 1024 / peers }'
}
report "after fill"
if [ "$settle" != 0 ]; then
    sleep "$settle"
    report "after ${settle} s settle"
fi
echo "peak RSS (VmHWM): $(hwm_kib) KiB"
echo "load after: $(uptime | sed 's/.*load average/load average/')"
