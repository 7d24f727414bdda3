#!/usr/bin/env bash
# Coverage-guided fuzzing campaign: builds every target with libFuzzer and sanitizer coverage,
# seeds each corpus (the decoder fixtures for XML and JSON, hand-made seeds for the others),
# then runs the targets one after another, SECONDS_PER_TARGET each (default 600).
# Usage: fuzz/run.sh [TARGET...]   (niced; logs and final stats under fuzz/logs/)
set -euo pipefail
cd "$(dirname "$0")"
seconds="${SECONDS_PER_TARGET:-600}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(xml_decode xml_flat xml_flat_stats json_decode stun chunkmap manifest peer_protocol)

# What `cargo fuzz build` does, spelled out so that no extra tool is needed: SanitizerCoverage
# with comparison tracing, AddressSanitizer, debug assertions and overflow checks. The nightly
# toolchain is used when installed; otherwise RUSTC_BOOTSTRAP lets stable accept -Z flags.
toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then toolchain=(+nightly); else export RUSTC_BOOTSTRAP=1; fi
host="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks \
-Zsanitizer=address"
nice -n 19 cargo "${toolchain[@]}" build --locked --release --target "$host" --bins \
    --target-dir target/libfuzzer
bin="target/libfuzzer/$host/release"

seed() {
    local target="$1" dir="corpus/$1"
    mkdir -p "$dir"
    case "$target" in
    xml_decode) cp ../crates/ppsp-proto/tests/fixtures/xml/*/* "$dir"/ ;;
    xml_flat)
        # Declaration, version, then (name, shape) pairs: a FIND of plain text children,
        # and one with an entity in the PeerID.
        printf '\x01\x00\x00\x00\x02\x00\x03\x00\x05\x00\x08\x00\x04\x00' >"$dir/find"
        printf '\x03\x01\x00\x01\x02\x51\x04\x00' >"$dir/reference"
        ;;
    xml_flat_stats)
        # One byte per piece: the four whole Stat elements, and a stream report spelled
        # out tag by tag.
        printf '\x00\x01\x02\x03' >"$dir/whole"
        printf '\x0a\x12\x1c\x33\x2a\x1d\x34\x2b\x25\x24' >"$dir/pieces"
        ;;
    json_decode) cp ../crates/ppsp-proto/tests/fixtures/json/*/* "$dir"/ ;;
    stun)
        # RFC 8489 Binding request, the same with an unknown comprehension-required attribute,
        # and an RFC 3489 request (no magic cookie).
        printf '\x00\x01\x00\x00\x21\x12\xa4\x42abcdefghijkl' >"$dir/binding-request"
        printf '\x00\x01\x00\x08\x21\x12\xa4\x42abcdefghijkl\x00\x7f\x00\x04zzzz' >"$dir/unknown-attribute"
        printf '\x00\x01\x00\x00abcdefghijklmnop' >"$dir/rfc3489-request"
        ;;
    chunkmap)
        # first (8 bytes), len (3 bytes), split point (1 byte), then the two base64 texts.
        printf '\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x19\x08//8PgA==//8=' >"$dir/draft-example"
        printf '\x00\x00\x00\x00\x00\x00\x00\x07\x00\x00\x10\x03/w=AA' >"$dir/unaligned"
        printf '\xff\xff\xff\xff\xff\xff\xff\xf0\x00\x00\x20\x06AAAAAA' >"$dir/near-u64-max"
        ;;
    manifest)
        # A VoD manifest of two chunks and a live manifest body (the target signs it).
        hash=0000000000000000000000000000000000000000000000000000000000000000
        printf '{"version":1,"kind":"vod","name":"movie.mp4","chunk_size":1024,"total_length":1500,"chunks":["%s","%s"]}' \
            "$hash" "$hash" >"$dir/vod"
        key=ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c
        printf '{"version":1,"kind":"live","public_key":"%s","name":"cam","chunk_size":1024,"sequence":3,"first":10,"chunks":[{"len":1024,"hash":"%s"}],"ended":false}' \
            "$key" "$hash" >"$dir/live"
        ;;
    peer_protocol)
        printf '/ppsp/v1/0a1b/chunk/42' >"$dir/chunk-path"
        printf '/ppsp/v1/live-ab/chunkmap?since=7' >"$dir/chunkmap-path"
        printf '{"first":0,"len":25,"map":"//8PgA==","complete":false,"version":3}' >"$dir/chunkmap-wire"
        ;;
    esac
}

mkdir -p logs artifacts
for target in "${targets[@]}"; do
    seed "$target"
    mkdir -p "artifacts/$target"
    echo "==> $target for ${seconds}s"
    nice -n 19 "$bin/$target" "corpus/$target" -max_total_time="$seconds" -print_final_stats=1 \
        -artifact_prefix="artifacts/$target/" -max_len=65536 -rss_limit_mb=1024 \
        >"logs/$target.log" 2>&1 || echo "!! $target stopped with a finding: see logs/$target.log"
    tail -n 15 "logs/$target.log"
done
