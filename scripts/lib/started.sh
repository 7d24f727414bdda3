# Sourced by the benchmark scripts: a work folder of their own, and the processes they
# start. Append each PID to `pids`; at exit every one of them is ended by its PID and
# waited for, and the folder is removed. Nothing the script did not start is touched.
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
