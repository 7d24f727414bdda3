#!/usr/bin/env bash
# Measures what a viewer of a live stream sees, with real encoders and players on loopback:
#
#  1. raw MPEG-TS (`ppsp peer live` on stdin): from a player's request to its first decoded
#     frame, and how far that frame is behind the encoder;
#  2. live HLS (`ppsp peer live --hls DIR`): from the encoder listing a segment to the
#     viewer's playlist listing it; ffprobe's first frame from the viewer's playlist, and
#     how far behind the encoder; hls.js's own latency estimate in headless Chromium
#     (skipped when chromium or npm is missing);
#  3. one source and four viewers: bytes the source uploaded against one copy per viewer,
#     and whether every viewer serves the same segments.
#
# Usage: scripts/stream-latency.sh   (PPSP=path/to/ppsp to use a given binary; the default
# builds the release binary). Needs ffmpeg and ffprobe (scripts/test.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${PPSP:-}" ]; then
    nice cargo build --release --locked -p ppsp >&2
    PPSP=target/release/ppsp
fi
PPSP=$(realpath "$PPSP")
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }
# Waits for "PREFIX..." in FILE and prints the rest of that line.
line_of() {
    local file=$1 prefix=$2
    for _ in $(seq 300); do
        if grep -q "^$prefix" "$file" 2>/dev/null; then
            sed -n "s/^$prefix//p" "$file" | head -1
            return
        fi
        sleep 0.1
    done
    echo "no '$prefix' line in $file" >&2
    exit 1
}
# First decoded video frame of URL: prints "SECONDS_TAKEN PTS".
first_frame() {
    local start end pts
    start=$(now)
    pts=$(ffprobe -v error -probesize 32768 -analyzeduration 0 -select_streams v:0 \
        -show_entries frame=pts_time -read_intervals %+#1 -of csv=p=0 "$1" | head -1 | tr -d ,)
    end=$(now)
    echo "$(echo "$end - $start" | bc -l) $pts"
}
spawn() { # NAME ARGS...: runs ARGS with stdout to $work/NAME.out, stderr to NAME.err
    local name=$1
    shift
    "$@" >"$work/$name.out" 2>"$work/$name.err" &
    pids+=($!)
}
encoder_args=(-hide_banner -loglevel error -re -f lavfi -i testsrc=size=640x360:rate=25
    -c:v libx264 -preset ultrafast -tune zerolatency -pix_fmt yuv420p -g 25 -b:v 1M)

spawn tracker "$PPSP" tracker --listen 127.0.0.1:0
tracker=$(line_of "$work/tracker.out" "listening on ")

echo "== raw MPEG-TS live (libx264, 640x360, 25 fps, keyframe every 1 s, 1 Mbit/s)"
mkfifo "$work/ts.fifo"
"$PPSP" peer live --tracker "$tracker" <"$work/ts.fifo" >"$work/ts-source.out" 2>"$work/ts-source.err" &
pids+=($!)
ts_started=$(now)
spawn ts-encoder ffmpeg "${encoder_args[@]}" -y -f mpegts "$work/ts.fifo"
swarm=$(line_of "$work/ts-source.out" "swarm ")
for viewer in 1 2 3; do
    sleep 3.3
    spawn "ts-viewer$viewer" "$PPSP" peer play "$swarm" --tracker "$tracker"
    addr=$(line_of "$work/ts-viewer$viewer.out" "listening on ")
    read -r took pts < <(first_frame "$addr/")
    behind=$(echo "$(now) - $ts_started - ($pts - 1.4)" | bc -l)
    printf '  viewer %d: first frame %.2f s after the request, %.2f s behind the encoder\n' \
        "$viewer" "$took" "$behind"
done

echo "== live HLS (same encoding, 1 s segments, 6 in the encoder's playlist)"
mkdir "$work/hls"
spawn hls-source "$PPSP" peer live --hls "$work/hls" --tracker "$tracker"
swarm=$(line_of "$work/hls-source.out" "swarm ")
hls_started=$(now)
spawn hls-encoder ffmpeg "${encoder_args[@]}" -f hls -hls_time 1 -hls_list_size 6 \
    -hls_flags delete_segments+independent_segments "$work/hls/index.m3u8"
sleep 3
viewers=()
viewer_peers=()
for viewer in 1 2 3 4; do
    spawn "hls-viewer$viewer" "$PPSP" peer play "$swarm" --tracker "$tracker" --find-interval 1
    viewers+=("$(line_of "$work/hls-viewer$viewer.out" "listening on ")")
    viewer_peers+=("$(line_of "$work/hls-viewer$viewer.out" "peer on ")")
done
read -r took pts < <(first_frame "${viewers[0]}/index.m3u8")
behind=$(echo "$(now) - $hls_started - ($pts - 1.4)" | bc -l)
printf '  ffprobe: first frame %.2f s after the request, %.2f s behind the encoder\n' "$took" "$behind"
# Segment propagation: poll both playlists every 20 ms for 8 s.
python3 - "$work/hls/index.m3u8" "${viewers[0]}/index.m3u8" <<'EOF'
import re, sys, time, urllib.request
encoder, viewer = sys.argv[1], sys.argv[2]
def sequences(text):
    first = int((re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text) or [0, 0])[1])
    return range(first, first + text.count("#EXTINF:"))
def encoder_list():
    try:
        return set(sequences(open(encoder).read()))
    except OSError:
        return set()
already, seen, lags = encoder_list(), {}, {}
end = time.time() + 8
while time.time() < end:
    for s in encoder_list() - already:
        seen.setdefault(s, time.time())
    listed = sequences(urllib.request.urlopen(viewer).read().decode())
    for s in listed:
        if s in seen and s not in lags:
            lags[s] = time.time() - seen[s]
    time.sleep(0.02)
values = sorted(lags.values())
print("  segment listed by the encoder -> listed by the viewer: "
      f"{len(values)} segments, median {values[len(values) // 2]:.3f} s, worst {values[-1]:.3f} s")
EOF

if command -v chromium >/dev/null && command -v npm >/dev/null; then
    npm install --silent --no-audit --no-fund --prefix "$work/npm" hls.js
    cp "$work/npm/node_modules/hls.js/dist/hls.min.js" "$work/"
    cat >"$work/index.html" <<EOF
<!doctype html><html><body><video id="v" muted autoplay></video>
<script src="/hls.min.js"></script><script>
const hls = new Hls(); hls.loadSource('${viewers[1]}/index.m3u8');
hls.attachMedia(document.getElementById('v'));
setInterval(() => fetch('/report?latency=' + hls.latency + '&t=' +
  document.getElementById('v').currentTime), 1000);
</script></body></html>
EOF
    (cd "$work" && exec python3 -c '
import http.server, sys
class H(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        if self.path.startswith("/report"):
            print(self.path, flush=True)
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print("port", s.server_address[1], flush=True)
s.serve_forever()') >"$work/page.out" 2>/dev/null &
    pids+=($!)
    port=$(line_of "$work/page.out" "port ")
    chromium --headless --no-sandbox --disable-gpu --no-first-run \
        --autoplay-policy=no-user-gesture-required --user-data-dir="$work/profile" \
        "http://127.0.0.1:$port/index.html" >/dev/null 2>&1 &
    pids+=($!)
    sleep 12
    grep -o 'latency=[0-9.]*&t=[0-9.]*' "$work/page.out" | tail -1 |
        sed 's/latency=\([0-9.]*\)&t=\([0-9.]*\)/  hls.js in Chromium: latency estimate \1 s at currentTime \2 s/'
fi

# Four viewers have been fetching all along: how much did the source upload?
peer_stat() { curl -s "$1/ppsp/v1/$swarm/stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])"; }
source_addr=$(line_of "$work/hls-source.out" "listening on ")
uploaded=$(peer_stat "$source_addr" uploaded_bytes)
received=0
for v in "${viewer_peers[@]}"; do received=$((received + $(peer_stat "$v" downloaded_bytes))); done
printf '  4 viewers received %d bytes; the source uploaded %d (%.2f copies of the stream)\n' \
    "$received" "$uploaded" "$(echo "4 * $uploaded / $received" | bc -l)"
# All four play the same sequence: each segment every viewer lists has the same bytes.
python3 - "${viewers[@]}" <<'EOF2'
import hashlib, re, sys, urllib.parse, urllib.request
def listing(base):
    url = base + "/index.m3u8"
    text = urllib.request.urlopen(url).read().decode()
    first = int((re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text) or [0, 0])[1])
    uris = [l for l in text.splitlines() if l and not l.startswith("#")]
    return {first + i: urllib.parse.urljoin(url, u) for i, u in enumerate(uris)}
listings = [listing(v) for v in sys.argv[1:]]
common = sorted(set.intersection(*(set(l) for l in listings)))
same = sum(
    len({hashlib.sha256(urllib.request.urlopen(l[s]).read()).hexdigest() for l in listings}) == 1
    for s in common
)
print(f"  {len(common)} segments listed by all {len(listings)} viewers, "
      f"{same} identical at every viewer")
EOF2
