#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs the outside tools the tests use
# (xmllint, curl for HTTP Digest, a STUN client from coturn, a JSON Schema validator, an
# OpenMetrics parser, headless Chromium, systemd-analyze, ffmpeg, hls.js, redis-server and
# redis-cli), then runs formatting, lints, every test (the systemd unit's check among them,
# and the core's tests once more on one Redis server and once on a Redis Cluster), and
# builds the benches and fuzz targets.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v xmllint >/dev/null 2>&1 || need_apt+=(libxml2-utils)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v turnutils_stunclient >/dev/null 2>&1 || need_apt+=(coturn)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
python3 -c 'import jsonschema' >/dev/null 2>&1 || need_apt+=(python3-jsonschema)
python3 -c 'import prometheus_client' >/dev/null 2>&1 || need_apt+=(python3-prometheus-client)
# The dashboard and streaming tests drive pages in headless Chromium (hls.js for streaming).
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# deploy/ppsp-tracker.service is checked with systemd-analyze verify.
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
# Real encoders and players for the streaming tests: ffmpeg, and hls.js from npm.
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "==> installing ${need_apt[*]}"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    # Another apt run may hold the dpkg lock for a while: wait it out rather than fail.
    for attempt in 1 2 3 4 5 6; do
        if $SUDO apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null; then
            break
        fi
        [ "$attempt" = 6 ] && exit 1
        echo "apt-get failed (busy?); retrying in 20 s"
        sleep 20
    done
fi
if ! python3 -c 'import jsonschema' >/dev/null 2>&1; then
    # Debian's python3-jsonschema serves /usr/bin/python3; another python3 first on PATH
    # gets it from PyPI instead.
    python3 -m pip install -q jsonschema
fi
if ! python3 -c 'import prometheus_client' >/dev/null 2>&1; then
    # The metrics tests read /metrics with prometheus_client's OpenMetrics parser.
    python3 -m pip install -q prometheus_client
fi

# hls.js from the npm registry, into a temporary folder removed at exit.
npm_dir=$(mktemp -d)
trap 'rm -rf "$npm_dir"' EXIT
echo "==> npm install hls.js (into $npm_dir)"
npm install --silent --no-audit --no-fund --prefix "$npm_dir" hls.js
export PPSP_TEST_HLS_JS="$npm_dir/node_modules/hls.js/dist/hls.min.js"

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings

echo "==> cargo test"
cargo test --locked --workspace

# The core's store suite again on Redis: one redis-server per test, then one cluster of
# three primaries per test binary (a key namespace per test).
core_store_suite=(--test state_table --test selection --test expiry_replay
    --test json_dialect --test caps --test ownership --test crash_between_scripts)
echo "==> tracker core tests on Redis (each test starts its own redis-server)"
PPSP_TEST_STORE=redis cargo test --locked -p ppsp-tracker-core "${core_store_suite[@]}"
echo "==> tracker core tests on a Redis Cluster (one per test binary)"
PPSP_TEST_STORE=redis-cluster cargo test --locked -p ppsp-tracker-core "${core_store_suite[@]}"

echo "==> benches and fuzz targets build"
cargo bench --locked --workspace --no-run
cargo build --locked --manifest-path fuzz/Cargo.toml --bins

echo "==> rustdoc"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps
