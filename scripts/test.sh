#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs the outside tools the tests use
# (xmllint, a STUN client from coturn, a JSON Schema validator, redis-server and redis-cli), then runs formatting, lints, every
# test, and builds the benches and fuzz targets.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v xmllint >/dev/null 2>&1 || need_apt+=(libxml2-utils)
command -v turnutils_stunclient >/dev/null 2>&1 || need_apt+=(coturn)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
python3 -c 'import jsonschema' >/dev/null 2>&1 || need_apt+=(python3-jsonschema)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "==> installing ${need_apt[*]}"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if ! python3 -c 'import jsonschema' >/dev/null 2>&1; then
    # Debian's python3-jsonschema serves /usr/bin/python3; another python3 first on PATH
    # gets it from PyPI instead.
    python3 -m pip install -q jsonschema
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings

echo "==> cargo test"
cargo test --locked --workspace

echo "==> tracker core tests on Redis (each test starts its own redis-server)"
PPSP_TEST_STORE=redis cargo test --locked -p ppsp-tracker-core \
    --test state_table --test selection --test expiry_replay --test json_dialect

echo "==> benches and fuzz targets build"
cargo bench --locked --workspace --no-run
cargo build --locked --manifest-path fuzz/Cargo.toml --bins

echo "==> rustdoc"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps
