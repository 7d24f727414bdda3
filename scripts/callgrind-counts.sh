#!/usr/bin/env bash
# Instructions per operation on the tracker's hot path, counted by callgrind: repeatable to
# a fraction of a per cent on any load, where timings on a shared host drift by tens.
#
#   scripts/callgrind-counts.sh [--times N] [PIECE...]
#
# PIECE is decode (the wrk FIND), encode (a FIND answer of 20 peers), find (a FIND of 20
# through the tracker core, 100 members), json-decode or json-encode (the JSON FIND and its
# answer), stat-decode (the XML STAT_REPORT of `ppsp bench`, with a 1,024-chunk map); all
# of them by default. Each piece runs under
# `valgrind --tool=callgrind` once with no repetition and once N times (default 1000) in
# the release example crates/ppsp/examples/hot_path_counts.rs; the difference over N is
# what one operation costs, setup left out. Installs valgrind (Debian package) when
# missing. Not part of the test command.
set -euo pipefail
cd "$(dirname "$0")/.."

times=1000
pieces=()
while [ $# -gt 0 ]; do
    case "$1" in
    --times) times="$2"; shift 2 ;;
    decode | encode | find | json-decode | json-encode | stat-decode) pieces+=("$1"); shift ;;
    *) echo "usage: $0 [--times N] [decode|encode|find|json-decode|json-encode|stat-decode ...]" >&2
       exit 2 ;;
    esac
done
[ ${#pieces[@]} -gt 0 ] || pieces=(decode encode find json-decode json-encode stat-decode)
case "$times" in '' | *[!0-9]* | 0) echo "--times must be a positive integer" >&2; exit 2 ;; esac

if ! command -v valgrind >/dev/null; then
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get install -y valgrind
fi

cargo build --locked --release -p ppsp --example hot_path_counts
example="${CARGO_TARGET_DIR:-target}/release/examples/hot_path_counts"

source scripts/lib/started.sh

# Total instructions of one run of the example.
count() {
    valgrind --tool=callgrind --callgrind-out-file="$work/out" "$example" "$1" "$2" \
        2>"$work/log" >/dev/null
    sed -n 's/^==[0-9]*== Collected : //p' "$work/log"
}

printf '%-11s %14s\n' piece "instructions"
for piece in "${pieces[@]}"; do
    setup=$(count "$piece" 0)
    total=$(count "$piece" "$times")
    printf '%-11s %14s\n' "$piece" $(((total - setup) / times))
done
