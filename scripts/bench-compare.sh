#!/usr/bin/env bash
# ppsp against aquatic_http, opentracker and a trivial hyper server, in one run on this
# machine, with the same wrk settings and the same peer population.
#
#   scripts/bench-compare.sh [--rounds N] [--duration SECS] [--connections N]
#
# Installs what is missing: wrk and opentracker (Debian packages), aquatic_http 0.9.0
# (`cargo install --locked` into target/bench-tools, ignored by git). Builds the release
# `ppsp` and `ppsp-bench-hello`, starts every server on a free loopback port, gives each
# tracker 20,000 peers in 200 swarms (ppsp through `ppsp bench fill`, the BitTorrent
# trackers through announces of the same peers before measuring), then runs rounds in
# which each target gets `wrk -t1 -c64 --latency` in turn:
#
#   ppsp-xml        PPSP XML FIND (20 peers), keep-alive
#   ppsp-json       RFC 7846 JSON FIND (20 peers), keep-alive
#   aquatic         aquatic_http announce (numwant 50), keep-alive
#   opentracker     opentracker announce (numwant 50); it closes every connection
#   hello           ppsp-bench-hello, fixed body, keep-alive
#   ppsp-xml-tls    PPSP XML FIND over HTTPS, a new connection per request
#   aquatic-tls     aquatic_http announce over HTTPS, keep_alive off: a connection per request
#
# and prints one table of the median over the rounds: requests/s, p50, p99, and the
# request rate as a ratio to aquatic_http's (plain to plain, TLS to TLS) and to the hello
# server's; then, round by round, the ratios the targets are set in, and their medians (a
# round's targets run back to back, so a host whose speed drifts between rounds moves both
# sides of a ratio alike), with the CPU time the hypervisor took from the machine during
# the round (`steal ms`, from /proc/stat). Not part of the test command. Every server is
# stopped by its PID at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3
duration=10
connections=64
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        --duration) duration="$2"; shift 2 ;;
        --connections) connections="$2"; shift 2 ;;
        -h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

peers=20000
swarms=200
tools=target/bench-tools
aquatic="$tools/bin/aquatic_http"

# --- tools ----------------------------------------------------------------------------------

apt_install() {
    if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
    # apt may be busy with another install for a while.
    for attempt in 1 2 3 4 5 6; do
        if $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
            $sudo apt-get install -y -qq "$@" >/dev/null; then
            return 0
        fi
        echo "apt-get busy or failing (attempt $attempt); retrying" >&2
        sleep 20
    done
    return 1
}
need_apt=()
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
command -v opentracker >/dev/null 2>&1 || need_apt+=(opentracker)
[ ${#need_apt[@]} -eq 0 ] || apt_install "${need_apt[@]}"
command -v openssl >/dev/null 2>&1 || apt_install openssl

if [ ! -x "$aquatic" ]; then
    # The default features pull in metrics 0.22, which no longer compiles on current
    # rustc; without them only the Prometheus export is missing.
    echo "==> installing aquatic_http 0.9.0 into $tools" >&2
    nice cargo install aquatic_http --version 0.9.0 --locked --no-default-features \
        --features mimalloc --root "$tools" >&2
fi

echo "==> building ppsp and ppsp-bench-hello (release)" >&2
cargo build --release --locked -p ppsp -p ppsp-bench-hello >&2
ppsp=target/release/ppsp
hello=target/release/ppsp-bench-hello

# --- servers --------------------------------------------------------------------------------

# shellcheck source=scripts/lib/started.sh
source scripts/lib/started.sh
# shellcheck source=scripts/lib/steal.sh
source scripts/lib/steal.sh

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until `$2` (a file) holds a line starting with `$3`; prints the rest of that line.
readiness() {
    local pid="$1" file="$2" prefix="$3" line
    for _ in $(seq 1 600); do
        line=$(grep -m1 "^$prefix" "$file" || true)
        if [ -n "$line" ]; then
            printf '%s\n' "${line#"$prefix"}"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || { echo "server $pid exited; its output:" >&2; cat "$file" >&2; return 1; }
        sleep 0.1
    done
    echo "no line starting with '$prefix' in $file within 60 s" >&2
    return 1
}

# Waits until something accepts TCP connections on 127.0.0.1:$2; shows log $3 on failure.
accepting() {
    local pid="$1" port="$2" log="$3"
    for _ in $(seq 1 600); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || { echo "server $pid exited; its output:" >&2; cat "$log" >&2; return 1; }
        sleep 0.1
    done
    echo "nothing accepts connections on port $port within 60 s" >&2
    return 1
}

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

# ppsp: one HTTP and one HTTPS listener on the same state; no session may expire during
# the run.
cat > "$work/ppsp.toml" <<'EOF'
[tracker]
session_idle_timeout_secs = 86400
EOF
"$ppsp" --quiet tracker --config "$work/ppsp.toml" --listen 127.0.0.1:0 \
    --tls-listen 127.0.0.1:0 --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" \
    > "$work/ppsp.out" 2> "$work/ppsp.err" &
pids+=($!)
ppsp_pid=$!
ppsp_url=$(readiness "$ppsp_pid" "$work/ppsp.out" "listening on http://")
ppsp_url="http://$ppsp_url/"
ppsp_tls_url=$(readiness "$ppsp_pid" "$work/ppsp.out" "listening on https://")
ppsp_tls_url="https://$ppsp_tls_url/"

"$hello" > "$work/hello.out" 2>&1 &
pids+=($!)
hello_url="http://$(readiness $! "$work/hello.out" "listening on http://")/"

# aquatic_http: its printed default configuration with the address set to a free loopback
# port, and a second instance with TLS and without keep-alive (it ignores a client's
# Connection: close, so this is how each request gets a new connection); everything
# else stays at its defaults. Its
# comments speak of DER files, but 0.9.0 reads PEM (it says "No private keys in file"
# when given DER).
aquatic_config() {
    local port="$1" tls="$2"
    "$aquatic" -p | awk -v addr="127.0.0.1:$port" -v tls="$tls" \
        -v cert="$work/cert.pem" -v key="$work/key.pem" '
        /^\[/ { section = $0 }
        section == "[network]" && /^address *=/ { print "address = \"" addr "\""; next }
        section == "[network]" && /^enable_tls *=/ { print "enable_tls = " tls; next }
        section == "[network]" && /^keep_alive *=/ && tls == "true" { print "keep_alive = false"; next }
        section == "[network]" && /^tls_certificate_path *=/ { print "tls_certificate_path = \"" cert "\""; next }
        section == "[network]" && /^tls_private_key_path *=/ { print "tls_private_key_path = \"" key "\""; next }
        { print }'
}
aquatic_port=$(free_port)
aquatic_config "$aquatic_port" false > "$work/aquatic.toml"
"$aquatic" -c "$work/aquatic.toml" > "$work/aquatic.out" 2>&1 &
pids+=($!)
accepting $! "$aquatic_port" "$work/aquatic.out"
aquatic_tls_port=$(free_port)
aquatic_config "$aquatic_tls_port" true > "$work/aquatic-tls.toml"
"$aquatic" -c "$work/aquatic-tls.toml" > "$work/aquatic-tls.out" 2>&1 &
pids+=($!)
accepting $! "$aquatic_tls_port" "$work/aquatic-tls.out"

# opentracker: the Debian build serves whitelisted torrents only; the whitelist is read
# after the chroot to -d, hence the path relative to it. The 200 info_hashes are those of
# docs/wrk/bt-announce.lua with BT_TORRENTS=200.
mkdir -p "$work/ot"
for torrent in $(seq 0 $((swarms - 1))); do
    printf '0123456789abcdef01234567%08x89abcdef\n' "$torrent"
done > "$work/ot/whitelist.txt"
ot_port=$(free_port)
opentracker -i 127.0.0.1 -p "$ot_port" -P "$ot_port" -d "$work/ot" -w /whitelist.txt \
    > "$work/ot.out" 2>&1 &
pids+=($!)
accepting $! "$ot_port" "$work/ot.out"

# --- the peer population --------------------------------------------------------------------

echo "==> filling ppsp with $peers peers in $swarms swarms" >&2
"$ppsp" --quiet bench fill --tracker "$ppsp_url" --peers "$peers" --swarms "$swarms" \
    --format xml --connections 64 >&2
# The peers that send the FINDs: one XML session, one JSON registration, in two of the
# filled swarms.
eval "$(docs/wrk/setup-session.sh "$ppsp_url" 1 fill-swarm-0)"
json_peer="wrk-json-$$"
json_swarm=fill-swarm-1
answer=$(curl -sf -H 'Content-Type: application/ppsp-tracker+json' --data-binary \
    "{\"PPSPTrackerProtocol\":{\"version\":1,\"request_type\":\"CONNECT\",\"transaction_id\":\"1\",\"peer_id\":\"$json_peer\",\"connect\":{\"peer_addr\":[{\"ip_address\":{\"address_type\":\"ipv4\",\"address\":\"127.0.0.1\"},\"port\":31000,\"priority\":1,\"type\":\"HOST\"}],\"swarm_action\":[{\"swarm_id\":\"$json_swarm\",\"action\":\"JOIN\",\"peer_mode\":\"LEECH\"}]}}}" \
    "$ppsp_url")
if ! printf '%s' "$answer" | grep -Eq '"error_code": ?0[,}]'; then
    echo "JSON CONNECT failed: $answer" >&2
    exit 1
fi

export BT_TORRENTS="$swarms" BT_PEERS="$peers" BT_NUMWANT=50
# Each announce registers its peer; one pass over the population fills both trackers.
echo "==> announcing $peers peers in $swarms torrents to aquatic_http and opentracker" >&2
for target in "http://127.0.0.1:$aquatic_port" "http://127.0.0.1:$ot_port"; do
    wrk -t1 -c"$connections" -d3s -s docs/wrk/bt-announce.lua "$target" >/dev/null
done

# --- rounds ---------------------------------------------------------------------------------

targets=(ppsp-xml ppsp-json aquatic opentracker hello ppsp-xml-tls aquatic-tls)

run_target() {
    local target="$1" secs="$2"
    local args=(-t1 -c"$connections" -d"${secs}s" --latency)
    case "$target" in
        ppsp-xml) PPSP_METHOD=FIND wrk "${args[@]}" -s docs/wrk/ppsp-xml.lua "$ppsp_url" ;;
        ppsp-json) PPSP_SWARM="$json_swarm" PPSP_PEER="$json_peer" \
            wrk "${args[@]}" -s docs/wrk/ppsp-json.lua "$ppsp_url" ;;
        aquatic) wrk "${args[@]}" -s docs/wrk/bt-announce.lua "http://127.0.0.1:$aquatic_port" ;;
        opentracker) wrk "${args[@]}" -s docs/wrk/bt-announce.lua "http://127.0.0.1:$ot_port" ;;
        hello) wrk "${args[@]}" "$hello_url" ;;
        ppsp-xml-tls) PPSP_CLOSE=1 PPSP_METHOD=FIND \
            wrk "${args[@]}" -s docs/wrk/ppsp-xml.lua "$ppsp_tls_url" ;;
        aquatic-tls) BT_CLOSE=1 \
            wrk "${args[@]}" -s docs/wrk/bt-announce.lua "https://127.0.0.1:$aquatic_tls_port" ;;
    esac
}

# One line per wrk run: requests/s, p50 ms, p99 ms, non-2xx answers, socket errors, bytes
# read per answer (HTTP head included).
parse_wrk() {
    awk '
        function ms(v) {
            if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
            if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
            if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
            return v + 0
        }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        $1 == "Requests/sec:" { rps = $2 }
        /Non-2xx or 3xx responses:/ { non2xx = $NF }
        /Socket errors:/ { gsub(",", ""); errors = $4 + $6 + $8 + $10 }
        / requests in .* read$/ {
            requests = $1; read = $5; sub("read", "", read)
            factor = 1
            if (read ~ /KB$/) factor = 1024
            if (read ~ /MB$/) factor = 1024 * 1024
            if (read ~ /GB$/) factor = 1024 * 1024 * 1024
            sub("[KMG]?B$", "", read)
            per_answer = requests ? read * factor / requests : 0
        }
        END { printf "%s %s %s %d %d %.0f\n", rps, p50, p99, non2xx, errors, per_answer }'
}

echo "machine: $(nproc) CPUs; load before: $(uptime | sed 's/.*load average/load average/')"
echo "wrk -t1 -c$connections -d${duration}s, $rounds rounds; $peers peers in $swarms swarms"
for target in "${targets[@]}"; do
    # Warm-up, not counted.
    run_target "$target" 2 >/dev/null
done
for round in $(seq 1 "$rounds"); do
    stolen_before=$(stolen_ms)
    for target in "${targets[@]}"; do
        run_target "$target" "$duration" > "$work/wrk-$target-$round.txt"
        parse_wrk < "$work/wrk-$target-$round.txt" >> "$work/results-$target"
        echo "round $round $target: $(tail -n1 "$work/results-$target")" >&2
    done
    echo $(( $(stolen_ms) - stolen_before )) >> "$work/stolen"
done
load_after=$(uptime | sed 's/.*load average/load average/')

# Median of column $2 of file $1.
median() {
    sort -g -k"$2","$2" "$1" | awk -v c="$2" '{ v[NR] = $c } END {
        if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
for target in "${targets[@]}"; do
    printf '%s %s %s %s %s %s %s\n' "$target" "$(median "$work/results-$target" 1)" \
        "$(median "$work/results-$target" 2)" "$(median "$work/results-$target" 3)" \
        "$(awk '{ s += $4 } END { print s }' "$work/results-$target")" \
        "$(awk '{ s += $5 } END { print s }' "$work/results-$target")" \
        "$(median "$work/results-$target" 6)"
done > "$work/medians"

awk '
    { rps[$1] = $2; p50[$1] = $3; p99[$1] = $4; bad[$1] = $5; err[$1] = $6; size[$1] = $7; order[NR] = $1 }
    END {
        printf "| %-13s | %10s | %8s | %8s | %10s | %8s | %8s | %7s | %13s |\n", "target", "req/s", "p50 ms", "p99 ms", "/ aquatic", "/ hello", "B/answer", "non-2xx", "socket errors"
        printf "|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n", "---------------", "-----------:", "---------:", "---------:", "-----------:", "---------:", "---------:", "--------:", "--------------:"
        for (i = 1; i <= NR; i++) {
            t = order[i]
            base = (t ~ /tls$/) ? rps["aquatic-tls"] : rps["aquatic"]
            printf "| %-13s | %10.0f | %8.2f | %8.2f | %10.2f | %8.2f | %8d | %7d | %13d |\n", t, rps[t], p50[t], p99[t], base ? rps[t] / base : 0, rps["hello"] ? rps[t] / rps["hello"] : 0, size[t], bad[t], err[t]
        }
    }' "$work/medians"

# Each round's ratios, from column 1 (req/s) of the targets' results side by side.
paste "$work/results-ppsp-xml" "$work/results-ppsp-json" "$work/results-aquatic" \
    "$work/results-hello" "$work/results-ppsp-xml-tls" "$work/results-aquatic-tls" "$work/stolen" |
    awk 'function r(a, b) { return b ? a / b : 0 }
        { printf "%d %.3f %.3f %.3f %.3f %d\n", NR, r($1, $19), r($1, $13), r($7, $1), r($25, $31), $37 }' \
    > "$work/ratios"
echo
printf '| %-6s | %11s | %13s | %10s | %17s | %8s |\n' round "xml / hello" "xml / aquatic" "json / xml" \
    "tls / aquatic-tls" "steal ms"
echo '|---|---:|---:|---:|---:|---:|'
awk '{ printf "| %-6s | %11.2f | %13.2f | %10.2f | %17.2f | %8d |\n", $1, $2, $3, $4, $5, $6 }' "$work/ratios"
printf '| %-6s | %11.2f | %13.2f | %10.2f | %17.2f | %8d |\n' median "$(median "$work/ratios" 2)" \
    "$(median "$work/ratios" 3)" "$(median "$work/ratios" 4)" "$(median "$work/ratios" 5)" \
    "$(median "$work/ratios" 6)"
echo "load after: $load_after"
echo "medians over the rounds; non-2xx and socket errors summed. opentracker and aquatic-tls close the connection after every answer, which wrk counts as read errors."
