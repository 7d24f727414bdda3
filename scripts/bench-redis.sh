#!/usr/bin/env bash
# `ppsp bench` (FIND / STAT_REPORT / KEEPALIVE loop) against one tracker node on the memory
# store, one node on a redis-server, and two nodes on one Redis Cluster (three primaries,
# three replicas), each driven for --duration seconds.
#
#   scripts/bench-redis.sh [--duration SECS] [--peers N] [--swarms N] [--mix all|find]
#   scripts/bench-redis.sh --fill N [--swarms N]
#
# --mix find sends only FINDs in the loop (the cost of peer lists alone). --fill N instead
# registers N peers (`ppsp bench fill`, JSON, one swarm each) through one node on one
# redis-server and prints the fill's report and the server's used_memory (INFO memory)
# before, after, and per peer.
#
# Builds the release binary, starts every redis-server on a free loopback port in a
# temporary directory (waiting for PING answers), starts the trackers on port 0 (the port
# is read from their readiness lines), and runs one `ppsp bench` per node at the same time
# (two nodes: two load generators, each with half the peers), and prints the CPU time the
# trackers and the redis-servers of each setup used during its run (the load generators'
# own CONNECTs and JOINs included) and the bytes the single redis-server received and sent.
# Every process it started is stopped by its PID at the end. Not part of the test command.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=10
peers=200
swarms=20
mix=all
fill=0
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) duration="$2"; shift 2 ;;
        --peers) peers="$2"; shift 2 ;;
        --swarms) swarms="$2"; shift 2 ;;
        --mix) mix="$2"; shift 2 ;;
        --fill) fill="$2"; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

# PPSP=path/to/ppsp uses that binary instead of building the release one.
if [ -z "${PPSP:-}" ]; then
    cargo build --release --locked -p ppsp >&2
fi
ppsp=${PPSP:-target/release/ppsp}

# shellcheck source=scripts/lib/started.sh
source scripts/lib/started.sh

# A free loopback port; a cluster node's bus port (10,000 higher) must be free as well.
free_port() {
    python3 -c '
import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    if port > 55535: continue
    try:
        socket.socket().bind(("127.0.0.1", port + 10000))
    except OSError:
        continue
    print(port); break'
}

# redis_server NAME [ARGS...]: starts one server; sets $port.
redis_server() {
    local name=$1
    shift
    port=$(free_port)
    mkdir -p "$work/$name"
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$work/$name" "$@" > "$work/$name.log" 2>&1 &
    pids+=($!)
    setup_redis+=($!)
    for _ in $(seq 300); do
        if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
            return
        fi
        sleep 0.05
    done
    echo "redis-server $name did not answer" >&2
    exit 1
}

# tracker NAME STORE [ARGS...]: starts a node; sets $url.
tracker() {
    local name=$1 store=$2
    shift 2
    "$ppsp" --quiet tracker --listen 127.0.0.1:0 --store "$store" "$@" \
        > "$work/$name.out" 2> "$work/$name.err" &
    pids+=($!)
    setup_trackers+=($!)
    for _ in $(seq 300); do
        if grep -q '^listening on ' "$work/$name.out" 2>/dev/null; then
            url=$(sed -n 's/^listening on \(http:[^ ]*\).*/\1/p' "$work/$name.out" | head -1)
            return
        fi
        sleep 0.05
    done
    echo "tracker $name did not start: $(cat "$work/$name.err")" >&2
    exit 1
}

# CPU time (user + system, in clock ticks) the given processes used so far.
cpu_ticks() {
    local total=0 pid
    for pid in "$@"; do
        total=$((total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat")))
    done
    echo "$total"
}

# Processes of the setup being measured, and their CPU time before its run.
setup_redis=()
setup_trackers=()
new_setup() {
    setup_redis=()
    setup_trackers=()
}
cpu_start() {
    trackers_before=$(cpu_ticks "${setup_trackers[@]}")
    redis_before=$(cpu_ticks "${setup_redis[@]}")
}
cpu_report() {
    local hz trackers redis
    hz=$(getconf CLK_TCK)
    trackers=$(( $(cpu_ticks "${setup_trackers[@]}") - trackers_before ))
    redis=$(( $(cpu_ticks "${setup_redis[@]}") - redis_before ))
    awk -v t="$trackers" -v r="$redis" -v hz="$hz" \
        'BEGIN { printf "cpu during the run: trackers %.2f s, redis-servers %.2f s\n", t / hz, r / hz }'
}

bench() {
    "$ppsp" --quiet bench --tracker "$1/" --peers "$2" --swarms "$swarms" --duration "$duration" \
        --mix "$mix"
}

# Bytes the redis-server on port $1 received and sent so far: "IN OUT".
net_bytes() {
    redis-cli -p "$1" info stats | tr -d '\r' |
        awk -F: '/^total_net_input_bytes:/ { i = $2 } /^total_net_output_bytes:/ { o = $2 } END { print i, o }'
}

used_memory() {
    redis-cli -p "$1" info memory | tr -d '\r' | sed -n 's/^used_memory:\([0-9]*\)$/\1/p'
}

if [ "$fill" -gt 0 ]; then
    # One file descriptor per connection on both sides; the fill uses a few hundred.
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    cat > "$work/fill.toml" <<'EOF'
[tracker]
# No peer may expire while the fill and the measurement run.
session_idle_timeout_secs = 86400
# The fill comes from a few hundred loopback addresses.
max_sessions_per_address = 1000000
EOF
    echo "== fill: one node, one redis-server, $fill peers in $swarms swarms"
    redis_server fill
    redis_port=$port
    tracker on-redis "redis://127.0.0.1:$redis_port" --config "$work/fill.toml"
    before=$(used_memory "$redis_port")
    "$ppsp" --quiet bench fill --tracker "$url/" --peers "$fill" --swarms "$swarms"
    after=$(used_memory "$redis_port")
    echo "used_memory before $before  after $after  per peer $(( (after - before) / fill ))"
    exit 0
fi

echo "== one node, memory store"
new_setup
tracker memory memory
cpu_start
bench "$url" "$peers"
cpu_report

echo "== one node, one redis-server"
new_setup
redis_server single
single_port=$port
tracker on-redis "redis://127.0.0.1:$single_port"
cpu_start
net_before=$(net_bytes "$single_port")
bench "$url" "$peers"
cpu_report
echo "redis-server network during the run (in out): $(net_bytes "$single_port") after, $net_before before"

echo "== two nodes, one Redis Cluster (3 primaries + 3 replicas)"
new_setup
nodes=()
for i in 1 2 3 4 5 6; do
    redis_server "node$i" --cluster-enabled yes
    nodes+=("127.0.0.1:$port")
done
redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes > "$work/create.log"
for _ in $(seq 300); do
    if redis-cli -p "${nodes[0]##*:}" cluster info | grep -q 'cluster_state:ok'; then
        break
    fi
    sleep 0.05
done
cluster_url="redis-cluster://$(IFS=,; echo "${nodes[*]}")"
tracker node-a "$cluster_url"
node_a=$url
tracker node-b "$cluster_url"
node_b=$url
cpu_start
bench "$node_a" $((peers / 2)) > "$work/bench-a.txt" &
bench_a=$!
bench "$node_b" $((peers / 2)) > "$work/bench-b.txt"
wait "$bench_a"
cpu_report
echo "-- node A"
cat "$work/bench-a.txt"
echo "-- node B"
cat "$work/bench-b.txt"
