#!/usr/bin/env bash
# User-space instructions per request, counted by callgrind: the plain hyper server
# (bench_origin) serving a 1 KiB object, the edge node serving a 1 KiB hit and a 1 KiB
# pass-through request, and a 1 KiB hit through a node with the router function
# (functions/router) on viewer-request, beside the same node without it. Unlike req/s and CPU time, the count does not move with what else
# the machine runs, so it shows what a change to the request path costs (kernel time, the
# larger share of a loopback request, is not counted).
#
# Run from the repo root:   bash bench/instructions.sh
# Environment: SECONDS_PER_ROW=8 (wrk's duration under callgrind for each row)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SECONDS_PER_ROW="${SECONDS_PER_ROW:-8}"
for tool in valgrind callgrind_control callgrind_annotate wrk curl python3; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is required" >&2; exit 1; }
done
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1 \
    || rustup target add wasm32-wasip1
cargo build --profile wasm --target wasm32-wasip1 -p router
cargo build --release -p edge-runtime --bin edge --example bench_origin
TARGET_DIR="$(realpath "${CARGO_TARGET_DIR:-target}")"
ROUTER_WASM="$TARGET_DIR/wasm32-wasip1/wasm/router.wasm"
ORIGIN_BIN="$TARGET_DIR/release/examples/bench_origin"
EDGE_BIN="$TARGET_DIR/release/edge"
# A backtrace per error would count instructions that are not the request path's.
unset RUST_BACKTRACE
# Per-request logging off, as in production.
export RUST_LOG=warn

WORK="$(mktemp -d -t edge-instructions.XXXXXX)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'
}

# wait_http URL: until the server answers (bounded; callgrind starts slowly).
wait_http() {
    for _ in $(seq 300); do
        curl -s -o /dev/null --max-time 2 "$1" && return 0
        sleep 0.2
    done
    echo "bench: $1 did not answer" >&2
    exit 1
}

# count NAME URL -- COMMAND...: runs COMMAND under callgrind, warms URL, counts the
# instructions of SECONDS_PER_ROW seconds of wrk load, and prints them per request.
count() {
    local name="$1" url="$2" out="$WORK/$1.cg" pid requests total
    shift 3
    valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >"$WORK/$name.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_http "$url"
    for _ in $(seq 200); do curl -s -o /dev/null "$url"; done
    callgrind_control -z "$pid" >/dev/null 2>&1
    requests="$(wrk -t1 -c8 "-d${SECONDS_PER_ROW}s" "$url" | awk '/requests in/ {print $1}')"
    callgrind_control -d "$pid" >/dev/null 2>&1
    sleep 0.5
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    # The dump after zeroing is the second file: exactly the load's instructions.
    total="$(callgrind_annotate "$(ls -t "$out".* | head -1)" 2>/dev/null \
        | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')"
    printf '| %s | %d | %d |\n' "$name" "$requests" "$((total / requests))"
}

echo "| row | requests | instructions per request |"
echo "|---|---:|---:|"
port="$(free_port)"
count "hyper, 1 KiB" "http://127.0.0.1:$port/1k" -- "$ORIGIN_BIN" --listen "127.0.0.1:$port"

# The origin for the edge rows runs natively; only the node is under callgrind.
"$ORIGIN_BIN" --listen 127.0.0.1:0 >"$WORK/origin.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
    origin="$(sed -n '1s/^listening on //p' "$WORK/origin.out")"
    [[ -n "$origin" ]] && break
    sleep 0.05
done
[[ -n "$origin" ]] || { echo "bench: the origin did not start" >&2; exit 1; }
edge_port="$(free_port)"
cat >"$WORK/edge.toml" <<EOF
[server]
listen = "127.0.0.1:$edge_port"

[origins.app]
type = "http"
targets = ["http://$origin"]

[[behaviors]]
path = "*"
origin = "app"
cache = { min_ttl = "0s", default_ttl = "1d", max_ttl = "365d" }
EOF
for row in "1k:edge, 1 KiB hit" "pass/1k:edge, 1 KiB pass-through"; do
    count "${row#*:}" "http://127.0.0.1:$edge_port/${row%%:*}" -- \
        "$EDGE_BIN" serve --config "$WORK/edge.toml"
done

# The router's node: the router sends GETs to its static origin `bucket`, so both rows serve
# the same file from the same cache; the only difference is the function (replayed from its
# decision tree once warm, see runtime/src/wasm/replay.rs).
mkdir -p "$WORK/bucket"
python3 -c 'import sys; open(sys.argv[1], "wb").write(bytes(i % 251 for i in range(1024)))' \
    "$WORK/bucket/1k"
for row in "router:edge+router, 1 KiB hit" ":edge (same node, no function), 1 KiB hit"; do
    router_port="$(free_port)"
    functions=""
    [[ -n "${row%%:*}" ]] && functions='functions = { viewer_request = "router" }'
    cat >"$WORK/router.toml" <<EOF
[server]
listen = "127.0.0.1:$router_port"
compile_cache = "$WORK/compiled"

[origins.bucket]
type = "static"
root = "$WORK/bucket"

[origins.app]
type = "http"
targets = ["http://$origin"]

[[behaviors]]
path = "*"
origin = "bucket"
$functions
cache = { min_ttl = "0s", default_ttl = "1d", max_ttl = "365d" }
cache_key = { query = "none" }

[functions.router]
module = "$ROUTER_WASM"
EOF
    count "${row#*:}" "http://127.0.0.1:$router_port/1k" -- \
        "$EDGE_BIN" serve --config "$WORK/router.toml"
done
