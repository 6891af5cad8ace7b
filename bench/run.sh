#!/usr/bin/env bash
# Cache-hit throughput benchmark: plain hyper vs. the edge node vs. the edge node with the router
# edge function on viewer-request vs. nginx proxy_cache; pass-through (uncacheable answers from
# the dynamic origin) through the node vs. nginx proxy_pass vs. the origin alone; memory per
# cached object and hits spread over many keys; plus the in-process micro-benchmark of what the
# router costs per request (runtime/examples/bench_function.rs).
#
# Run from the repo root:   bash bench/run.sh
# Environment:
#   DURATION=10     seconds per wrk run
#   RUNS=3          runs per cell (server x object); the median by req/s is reported
#   NOISE_LIMIT=15  a run during which other processes used more than this % of a core is
#                   flagged and left out of the median
#   SKIP_EDGE=1     leave the edge node out (e.g. while it does not build); implies SKIP_FUNCTION=1
#   SKIP_FUNCTION=1 leave the edge function parts out (edge+router and the micro-benchmark)
#   SKIP_NGINX=1    leave nginx out
#   MICRO_ITERATIONS=20000  timed iterations per loop of the micro-benchmark
#   ISOLATION_SECONDS=5     seconds per phase of the isolation benchmark (bench_isolation)
#   KEYS=200000             distinct 1 KiB objects for the memory and locality rows (0: skip them)
#
# See bench/README.md for what the numbers mean.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION="${DURATION:-10}"
RUNS="${RUNS:-3}"
SKIP_EDGE="${SKIP_EDGE:-0}"
SKIP_NGINX="${SKIP_NGINX:-0}"
SKIP_FUNCTION="${SKIP_FUNCTION:-0}"
[[ "$SKIP_EDGE" == 1 ]] && SKIP_FUNCTION=1
MICRO_ITERATIONS="${MICRO_ITERATIONS:-20000}"
ISOLATION_SECONDS="${ISOLATION_SECONDS:-5}"
NOISE_LIMIT="${NOISE_LIMIT:-15}"
KEYS="${KEYS:-200000}"

# The load generator always gets CPU 1 and every server under test CPU 0: on a 2-core machine an
# unpinned run is bimodal (it depends on where connections land), so pinning is what makes the
# rows comparable.
SERVER_CPU=0
WRK_CPU=1
WRK_ARGS=(-t1 -c32 "-d${DURATION}s" --latency)

# `pass` is not cached anywhere: bench_origin answers /pass/1k with `Cache-Control: no-store`,
# so every request goes through the proxy to the origin (what an API call does).
OBJECTS=(1k 100k pass)
declare -A OBJECT_SIZE=([1k]=1024 [100k]=102400 [pass]=1024)
declare -A OBJECT_LABEL=([1k]="1 KiB" [100k]="100 KiB" [pass]="1 KiB pass")
declare -A OBJECT_PATH=([1k]=/1k [100k]=/100k [pass]=/pass/1k)
# The rows' reference: hyper serving the object itself, the ceiling (for `pass`, the origin alone).

log() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'bench: error: %s\n' "$*" >&2
    # The cleanup removes $WORK: show the servers' last log lines first (a failed request's
    # reason is there, at RUST_LOG=warn).
    for f in "${WORK:-/nonexistent}"/*.log; do
        [[ -s "$f" ]] && { printf '==> %s (last lines):\n' "$f" >&2; tail -n 20 "$f" >&2; }
    done
    exit 1
}

# ---------------------------------------------------------------------------------------------
# Cleanup: every background process we start is recorded here and stopped on exit, whatever the
# reason (error, Ctrl-C, normal end).
# ---------------------------------------------------------------------------------------------
WORK="$(mktemp -d -t edge-bench.XXXXXX)"
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        # Give each process up to ~2 s to go away, then force it.
        for _ in $(seq 40); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
# Background jobs of a non-interactive shell ignore SIGINT, so Ctrl-C reaches only the foreground
# command and this shell; turning the signal into an exit runs the EXIT trap above.
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# ---------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------
need_apt=()
command -v wrk >/dev/null || need_apt+=(wrk)
# h2load (nghttp2-client) drives the HTTP/2 rows.
command -v h2load >/dev/null || need_apt+=(nghttp2-client)
if [[ "$SKIP_NGINX" != 1 ]] && ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
    need_apt+=(nginx)
fi
if ((${#need_apt[@]})); then
    log "installing ${need_apt[*]}"
    # Debian's policy-rc.d in containers keeps the packaged nginx service from starting; we run
    # our own instance below with its own config.
    apt-get update && apt-get install -y wrk nginx nghttp2-client
fi
NGINX_BIN="$(command -v nginx || echo /usr/sbin/nginx)"
for tool in taskset curl python3 awk openssl; do
    command -v "$tool" >/dev/null || die "$tool is required"
done

# ---------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------
if [[ "$SKIP_EDGE" == 1 ]]; then
    log "building bench_origin (SKIP_EDGE=1: edge node and functions left out)"
    cargo build --release -p edge-runtime --example bench_origin
elif [[ "$SKIP_FUNCTION" == 1 ]]; then
    log "building edge and bench_origin (SKIP_FUNCTION=1: edge functions left out)"
    cargo build --release -p edge-runtime --bin edge --example bench_origin
else
    if ! rustup target list --installed | grep -qx wasm32-wasip1; then
        log "adding the wasm32-wasip1 target"
        rustup target add wasm32-wasip1
    fi
    log "building the router function (wasm32-wasip1), edge, bench_origin and bench_function"
    cargo build --profile wasm --target wasm32-wasip1 -p router
    cargo build --release -p edge-runtime --bin edge --example bench_origin --example bench_function \
        --example bench_isolation
fi
TARGET_DIR="$(realpath "${CARGO_TARGET_DIR:-target}")"
ORIGIN_BIN="$TARGET_DIR/release/examples/bench_origin"
EDGE_BIN="$TARGET_DIR/release/edge"
FUNCTION_BIN="$TARGET_DIR/release/examples/bench_function"
ISOLATION_BIN="$TARGET_DIR/release/examples/bench_isolation"
# Absolute: the node resolves a relative module path against its config file's directory.
ROUTER_WASM="$TARGET_DIR/wasm32-wasip1/wasm/router.wasm"

# RUST_BACKTRACE=1 (set in this environment) makes every error capture a backtrace, which costs
# microseconds per request on an error path; benchmark without it. (The micro-benchmark below
# runs a second time with it set, to show that the function path has no such error.)
unset RUST_BACKTRACE

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
free_port() {
    python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'
}

# wait_http NAME PID URL: poll until the server answers any HTTP status (bounded: ~10 s), failing
# early if the process died.
wait_http() {
    local name="$1" pid="$2" url="$3" code
    for _ in $(seq 200); do
        kill -0 "$pid" 2>/dev/null || die "$name exited during startup"
        code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)"
        [[ "$code" != 000 ]] && return 0
        sleep 0.05
    done
    die "$name did not answer on $url within 10 s"
}

# start_origin NAME [PREFIX...]: start bench_origin (behind an optional command prefix such as
# taskset) on a free port; sets ORIGIN_ADDR_RESULT and ORIGIN_PID_RESULT.
start_origin() {
    local name="$1" out pid addr
    shift
    out="$WORK/$name.out"
    "$@" "$ORIGIN_BIN" --listen 127.0.0.1:0 >"$out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    # The first stdout line is "listening on ADDR"; wait for it (bounded) rather than sleeping.
    for _ in $(seq 200); do
        addr="$(sed -n '1s/^listening on //p' "$out")"
        [[ -n "$addr" ]] && break
        kill -0 "$pid" 2>/dev/null || { cat "$out" >&2; die "$name exited during startup"; }
        sleep 0.05
    done
    [[ -n "$addr" ]] || die "$name did not print its address"
    wait_http "$name" "$pid" "http://$addr/__ready"
    ORIGIN_ADDR_RESULT="$addr"
    ORIGIN_PID_RESULT="$pid"
}

# check_hit NAME BASEURL OBJECT HEADER VALUE-REGEX: one GET that must be a cache hit with the full
# body; returns non-zero (with the headers on stderr) otherwise.
check_hit() {
    local name="$1" base="$2" obj="$3" header="$4" want="$5" headers size
    headers="$WORK/hit-$name-$obj.headers"
    # -k: the HTTPS rows use a self-signed certificate.
    size="$(curl -ksS -D "$headers" -o /dev/null -w '%{size_download}' --max-time 10 "$base/$obj")" \
        || { log "$name: GET $base/$obj failed"; return 1; }
    if ! grep -qiE "^$header:[[:space:]]*$want" "$headers"; then
        cat "$headers" >&2
        log "$name: GET $base/$obj was not a cache hit (expected '$header: $want'; headers above)"
        return 1
    fi
    if [[ "$size" != "${OBJECT_SIZE[$obj]}" ]]; then
        log "$name: cached $base/$obj has $size bytes, expected ${OBJECT_SIZE[$obj]}"
        return 1
    fi
}

# prime NAME BASEURL HEADER VALUE-REGEX: fetch each object twice; the second answer must be a
# cache hit with the full body, otherwise the benchmark would measure the origin path.
prime() {
    local name="$1" base="$2" header="$3" want="$4" obj size
    for obj in 1k 100k; do
        curl -sS -o /dev/null --max-time 10 "$base/$obj" || die "$name: priming $base/$obj failed"
        check_hit "$name" "$base" "$obj" "$header" "$want" || die "$name: priming failed"
    done
    log "$name: cache primed, second requests were hits"
}

# check_pass NAME BASEURL: the pass-through object comes back whole, twice (nothing caches it).
check_pass() {
    local name="$1" base="$2" size
    for _ in 1 2; do
        size="$(curl -sS -o /dev/null -w '%{http_code} %{size_download}' --max-time 10 "$base/pass/1k")" \
            || die "$name: GET $base/pass/1k failed"
        [[ "$size" == "200 1024" ]] || die "$name: GET $base/pass/1k answered '$size', expected '200 1024'"
    done
}

# to_us VALUE: wrk latency ("812.00us", "1.23ms", "2.01s") to microseconds.
to_us() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) x = v + 0; else if (v ~ /ms$/) x = v * 1000;
        else if (v ~ /m$/) x = v * 60e6; else if (v ~ /s$/) x = v * 1e6; else x = -1;
        printf "%.0f", x }'
}

# CPU accounting, to notice runs disturbed by something else on this 2-core machine (typically a
# cargo build or test run of another engineer): anything else that runs takes CPU from the
# server or from wrk and skews the figures, ratios included.
CLK_TCK="$(getconf CLK_TCK)"
# Jiffies the whole machine spent busy (user, nice, system, irq, softirq), and in all.
machine_jiffies() {
    awk '$1 == "cpu" { busy = $2 + $3 + $4 + $7 + $8; print busy, busy + $5 + $6 }' /proc/stat
}
# Jiffies used by a process, its threads and its direct children (nginx's worker).
tree_jiffies() {
    local p total=0 j
    for p in "$1" $(pgrep -P "$1" || true); do
        # Fields after the ")" that closes the command name: utime and stime are the 12th and 13th.
        j="$(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null || echo 0)"
        total=$((total + j))
    done
    echo "$total"
}
NOISY_CELLS=()
RETRIES_LEFT=6

# wait_quiet: with every server idle, wait (30 s at most) until other processes use less than
# NOISE_LIMIT % of a core over one second.
wait_quiet() {
    local b0 b1 t0 t1 pct
    for _ in $(seq 30); do
        read -r b0 t0 < <(machine_jiffies)
        sleep 1
        read -r b1 t1 < <(machine_jiffies)
        pct=$(( (b1 - b0) * 100 * $(nproc) / (t1 - t0 > 0 ? t1 - t0 : 1) ))
        ((pct <= NOISE_LIMIT)) && return 0
    done
    log "warning: the machine stayed busy (${pct}% of a core) for 30 s; measuring anyway"
}

# run_wrk SERVER OBJECT URL RUN [WRK-ARGS...]: one wrk run; appends "rps p50_us p99_us clean
# cpu_us" to the cell's file and sets LAST_CLEAN, clean being 0 when other processes disturbed
# the run; cpu_us is the server's CPU time (user + system, threads and children included, from
# /proc/PID/stat) per request answered.
run_wrk() {
    local server="$1" obj="$2" url="$3" run="$4" out rps p50 p99 bad errs requests cpu
    local pid="${SERVER_PID[$server]}" m0 m1 s0 s1 o0=0 o1=0 times wall wrk_j others clean note=""
    # A pass-through row's origin works for the run too: its CPU is the benchmark's, not noise.
    local origin_pid=""
    [[ "$obj" == pass && -n "${ORIGIN_PID:-}" && "$pid" != "$ORIGIN_PID" ]] && origin_pid="$ORIGIN_PID"
    out="$WORK/wrk-$server-$obj-$run.txt"
    read -r m0 _ < <(machine_jiffies)
    s0="$(tree_jiffies "$pid")"
    [[ -z "$origin_pid" ]] || o0="$(tree_jiffies "$origin_pid")"
    # `time` gives wrk's own CPU use; the rest of the machine's busy time, less the server's, is
    # somebody else's.
    times="$( { TIMEFORMAT='%R %U %S'; time taskset -c "$WRK_CPU" wrk "${WRK_ARGS[@]}" "${@:5}" "$url" >"$out" 2>&1; } 2>&1 )" \
        || { cat "$out" >&2; die "wrk failed"; }
    read -r m1 _ < <(machine_jiffies)
    s1="$(tree_jiffies "$pid")"
    [[ -z "$origin_pid" ]] || o1="$(tree_jiffies "$origin_pid")"
    rps="$(awk '/^Requests\/sec:/ {print $2}' "$out")"
    p50="$(awk '$1 == "50%" {print $2}' "$out")"
    p99="$(awk '$1 == "99%" {print $2}' "$out")"
    requests="$(awk '/ requests in / {print $1}' "$out")"
    [[ -n "$rps" && -n "$p50" && -n "$p99" && -n "$requests" ]] || { cat "$out" >&2; die "could not parse wrk output"; }
    cpu="$(awk -v j="$((s1 - s0))" -v n="$requests" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", (n > 0 ? j / hz * 1e6 / n : 0) }')"
    # Error answers are usually faster than real ones; a run with any is not a measurement.
    bad="$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")"
    [[ -z "$bad" ]] || { cat "$out" >&2; die "$server $obj: $bad non-2xx/3xx responses"; }
    errs="$(grep -E '^ *Socket errors:' "$out" || true)"
    [[ -z "$errs" ]] || log "warning: $server $obj run $run:$errs"

    read -r wall wrk_j < <(awk -v t="$times" -v hz="$CLK_TCK" \
        'BEGIN { split(t, a, " "); print a[1], (a[2] + a[3]) * hz }')
    # Percent of one core used by other processes during the run.
    others="$(awk -v m="$((m1 - m0))" -v s="$((s1 - s0 + o1 - o0))" -v w="$wrk_j" -v wall="$wall" -v hz="$CLK_TCK" \
        'BEGIN { x = (m - s - w) / (wall * hz) * 100; printf "%.0f", (x < 0 ? 0 : x) }')"
    clean=1
    if ((others > NOISE_LIMIT)); then
        clean=0
        note="  <- disturbed"
        NOISY_CELLS+=("$server/$obj run $run (${others}%)")
    fi
    LAST_CLEAN="$clean"
    printf '%s %s %s %s %s\n' "$rps" "$(to_us "$p50")" "$(to_us "$p99")" "$clean" "$cpu" >>"$WORK/cell-$server-$obj"
    log "$(printf '%-11s %-6s run %d/%d: %8.0f req/s  p50 %-9s p99 %-9s CPU %6.2f µs/req  others %3d%% of a core%s' \
        "$server" "$obj" "$run" "$RUNS" "$rps" "$p50" "$p99" "$cpu" "$others" "$note")"
}

# run_wrk_settled SERVER OBJECT URL RUN [WRK-ARGS...]: run_wrk, and a disturbed run repeated
# (twice at most, RETRIES_LEFT in all) after waiting for the machine to calm down, so that every
# cell's median is taken over the same number of undisturbed runs where possible.
run_wrk_settled() {
    local attempt
    for attempt in 1 2 3; do
        run_wrk "$@"
        ((LAST_CLEAN)) && return 0
        ((attempt < 3 && RETRIES_LEFT > 0)) || return 0
        RETRIES_LEFT=$((RETRIES_LEFT - 1))
        wait_quiet
    done
}

# median SERVER OBJECT: the run with the median req/s ("rps p50 p99 clean cpu"), taken over the
# undisturbed runs if there are any; with an even count, the upper of the two middle runs.
median() {
    local file="$WORK/cell-$1-$2" runs
    runs="$(awk '$4 == 1' "$file")"
    [[ -n "$runs" ]] || runs="$(cat "$file")"
    sort -n -k1,1 <<<"$runs" | awk -v n="$(wc -l <<<"$runs")" 'NR == int(n / 2) + 1'
}

# ---------------------------------------------------------------------------------------------
# Micro-benchmark: what the router function adds per request, in process (bench_function, see
# runtime/examples/bench_function.rs), before any server runs. Pinned like the servers; once
# with RUST_BACKTRACE unset as everything here, once with RUST_BACKTRACE=1 (this environment's
# default): an error value on the per-request path would show up as a few µs more.
# ---------------------------------------------------------------------------------------------
MICRO_NOTES=()
if [[ "$SKIP_FUNCTION" != 1 ]]; then
    for backtrace in unset 1; do
        wait_quiet
        log "micro-benchmark: router per request, RUST_BACKTRACE=$backtrace"
        out="$WORK/micro-backtrace-$backtrace.txt"
        env=(env -u RUST_BACKTRACE)
        [[ "$backtrace" == unset ]] || env=(env RUST_BACKTRACE="$backtrace")
        read -r m0 _ < <(machine_jiffies)
        # As for wrk: what the machine was busy with, less the benchmark's own CPU, is others'.
        times="$( { TIMEFORMAT='%R %U %S'; time "${env[@]}" taskset -c "$SERVER_CPU" "$FUNCTION_BIN" \
            "$ROUTER_WASM" --iterations "$MICRO_ITERATIONS" >"$out" 2>&1; } 2>&1 )" \
            || { cat "$out" >&2; die "bench_function failed"; }
        read -r m1 _ < <(machine_jiffies)
        others="$(awk -v t="$times" -v m="$((m1 - m0))" -v hz="$CLK_TCK" 'BEGIN {
            split(t, a, " "); x = (m - (a[2] + a[3]) * hz) / (a[1] * hz) * 100
            printf "%.0f", (x < 0 ? 0 : x) }')"
        cat "$out" >&2
        log "micro-benchmark: others used ${others}% of a core meanwhile"
        if ((others > NOISE_LIMIT)); then
            MICRO_NOTES+=("RUST_BACKTRACE=$backtrace (${others}%)")
        fi
    done
fi

# ---------------------------------------------------------------------------------------------
# Isolation: function-less requests while 8 clients flood a function that spins to its CPU limit
# (bench_isolation, see runtime/examples/bench_isolation.rs). Not pinned: it measures how the
# node shares the machine's cores between its workers and its slow lane.
# ---------------------------------------------------------------------------------------------
if [[ "$SKIP_FUNCTION" != 1 ]]; then
    wait_quiet
    log "isolation: function-less requests while 8 clients flood a spinning function"
    "$ISOLATION_BIN" --seconds "$ISOLATION_SECONDS" >"$WORK/isolation.txt" 2>&1 \
        || { cat "$WORK/isolation.txt" >&2; die "bench_isolation failed"; }
    cat "$WORK/isolation.txt" >&2
fi

# ---------------------------------------------------------------------------------------------
# Servers. All are started up front and stay idle while another is measured, so the runs can be
# interleaved (below).
# ---------------------------------------------------------------------------------------------
SERVERS=()
declare -A URL SERVER_PID

# 1. Plain hyper: the ceiling. Pinned like every server under test.
start_origin hyper taskset -c "$SERVER_CPU"
URL[hyper]="http://$ORIGIN_ADDR_RESULT"
SERVER_PID[hyper]="$ORIGIN_PID_RESULT"
SERVERS+=(hyper)
log "hyper baseline on $ORIGIN_ADDR_RESULT (CPU $SERVER_CPU)"

# 2. The origin behind the edge node and nginx. After priming, hits never reach it; the
#    pass-through rows send it every request, so it shares wrk's CPU rather than take time from
#    the proxy under test on CPU $SERVER_CPU.
if [[ "$SKIP_EDGE" != 1 || "$SKIP_NGINX" != 1 ]]; then
    start_origin origin taskset -c "$WRK_CPU"
    ORIGIN="$ORIGIN_ADDR_RESULT"
    ORIGIN_PID="$ORIGIN_PID_RESULT"
    log "origin on $ORIGIN (CPU $WRK_CPU)"
fi

# 3. The edge node.
# One self-signed ECDSA P-256 certificate for the HTTPS rows of both the edge node and nginx, so
# that both do the same handshake and record crypto.
mkdir -p "$WORK/tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$WORK/tls/key.pem" -out "$WORK/tls/cert.pem" 2>/dev/null \
    || die "openssl could not make the benchmark certificate"

if [[ "$SKIP_EDGE" != 1 ]]; then
    EDGE_PORT="$(free_port)"
    EDGE_TLS_PORT="$(free_port)"
    cat >"$WORK/edge.toml" <<EOF
[server]
listen = "127.0.0.1:$EDGE_PORT"
tls_listen = "127.0.0.1:$EDGE_TLS_PORT"
tls_cert = "$WORK/tls/cert.pem"
tls_key = "$WORK/tls/key.pem"

[cache]
# Room for the KEYS small objects of the memory and locality rows without evicting any.
max_size = "1 GiB"
max_object_size = "16 MiB"

[origins.app]
type = "http"
targets = ["http://$ORIGIN"]
connect_timeout = "2s"
response_timeout = "30s"

# The compression rows: a text page from a static origin, compressed once and cached.
[origins.pages]
type = "static"
root = "$WORK/pages"

[[behaviors]]
path = "/text/*"
origin = "pages"
compress = true
cache = { min_ttl = "0s", default_ttl = "1d", max_ttl = "365d" }

[[behaviors]]
path = "*"
origin = "app"
cache = { min_ttl = "0s", default_ttl = "1d", max_ttl = "365d" }
cache_key = { query = "none" }
EOF
    # A 4 KiB HTML page, the size of a small page or stylesheet.
    mkdir -p "$WORK/pages/text"
    python3 - "$WORK/pages/text/page.html" <<'PY'
import sys
rows = "".join(f"<tr><td>row {i}</td><td>value {i * 7919 % 1000}</td></tr>\n" for i in range(200))
with open(sys.argv[1], "w") as f:
    f.write(("<!doctype html><html><body><table>\n" + rows)[:4096])
PY
    # RUST_LOG=warn keeps per-request logging off, as in production.
    RUST_LOG=warn taskset -c "$SERVER_CPU" "$EDGE_BIN" serve --config "$WORK/edge.toml" \
        >"$WORK/edge.log" 2>&1 &
    EDGE_PID=$!
    PIDS+=("$EDGE_PID")
    if ! (wait_http edge "$EDGE_PID" "http://127.0.0.1:$EDGE_PORT/__ready"); then
        echo "--- edge log:" >&2
        cat "$WORK/edge.log" >&2
        die "edge node did not start with the config that $0 writes (set SKIP_EDGE=1 to benchmark without it)"
    fi
    URL[edge]="http://127.0.0.1:$EDGE_PORT"
    SERVER_PID[edge]="$EDGE_PID"
    prime edge "${URL[edge]}" X-Cache Hit
    check_pass edge "${URL[edge]}"
    SERVERS+=(edge)
    log "edge on 127.0.0.1:$EDGE_PORT (CPU $SERVER_CPU)"
    # The same node and cache over its HTTPS listener (1 KiB row and the HTTP/2 row only).
    URL[edge-https]="https://127.0.0.1:$EDGE_TLS_PORT"
    SERVER_PID[edge-https]="$EDGE_PID"
    # The host (with its port) is part of the cache key, so the HTTPS port's object is its own.
    curl -ksS -o /dev/null --max-time 10 "${URL[edge-https]}/1k" || die "edge-https: priming failed"
    check_hit edge-https "${URL[edge-https]}" 1k X-Cache Hit || die "edge-https: no hit over HTTPS"
    SERVERS+=(edge-https)
fi

# 4. The edge node with the router edge function (functions/router) on viewer-request: the same
#    cache hits, plus a fresh Wasm instance running the router for every request. The router
#    sends GETs to the origin `bucket` (and /api/* to `app`), so `bucket` is a static origin
#    holding the same two objects, byte for byte, as bench_origin, and `app` is bench_origin.
if [[ "$SKIP_FUNCTION" != 1 ]]; then
    mkdir -p "$WORK/bucket"
    python3 - "$WORK/bucket" <<'PY'
import sys
for name, size in (("1k", 1024), ("100k", 102400)):
    with open(f"{sys.argv[1]}/{name}", "wb") as f:
        f.write(bytes(i % 251 for i in range(size)))  # what bench_origin serves
PY
    ROUTER_PORT="$(free_port)"
    cat >"$WORK/edge-router.toml" <<EOF
[server]
listen = "127.0.0.1:$ROUTER_PORT"
# Compiled once at start into the temp dir, rather than into ~/.cache.
compile_cache = "$WORK/compiled"

[cache]
max_size = "256 MiB"
max_object_size = "16 MiB"

[origins.bucket]
type = "static"
root = "$WORK/bucket"

[origins.app]
type = "http"
targets = ["http://$ORIGIN"]
connect_timeout = "2s"
response_timeout = "30s"

[[behaviors]]
path = "*"
origin = "bucket"
functions = { viewer_request = "router" }
cache = { min_ttl = "0s", default_ttl = "1d", max_ttl = "365d" }
cache_key = { query = "none" }

[functions.router]
module = "$ROUTER_WASM"
EOF
    RUST_LOG=warn taskset -c "$SERVER_CPU" "$EDGE_BIN" serve --config "$WORK/edge-router.toml" \
        >"$WORK/edge-router.log" 2>&1 &
    ROUTER_PID=$!
    PIDS+=("$ROUTER_PID")
    if ! (wait_http edge+router "$ROUTER_PID" "http://127.0.0.1:$ROUTER_PORT/__ready"); then
        echo "--- edge+router log:" >&2
        cat "$WORK/edge-router.log" >&2
        die "the edge node with the router did not start (set SKIP_FUNCTION=1 to benchmark without it)"
    fi
    URL[edge+router]="http://127.0.0.1:$ROUTER_PORT"
    SERVER_PID[edge+router]="$ROUTER_PID"
    prime edge+router "${URL[edge+router]}" X-Cache Hit
    SERVERS+=(edge+router)
    log "edge+router on 127.0.0.1:$ROUTER_PORT (CPU $SERVER_CPU)"
fi

# 5. nginx with proxy_cache: the reference cache.
if [[ "$SKIP_NGINX" != 1 ]]; then
    NGINX_PORT="$(free_port)"
    NGINX_TLS_PORT="$(free_port)"
    NGX="$WORK/nginx"
    mkdir -p "$NGX/cache" "$NGX/tmp"
    cat >"$NGX/nginx.conf" <<EOF
# Started as root, nginx would switch its worker to 'nobody', which cannot write the private
# temp dir; stay root (the directive is ignored with a warning when not root).
user root;
daemon off;
pid $NGX/nginx.pid;
error_log $NGX/error.log warn;
worker_processes 1;
worker_cpu_affinity 0001;

events {
    worker_connections 1024;
}

http {
    access_log off;
    client_body_temp_path $NGX/tmp/body;
    proxy_temp_path $NGX/tmp/proxy;
    fastcgi_temp_path $NGX/tmp/fastcgi;
    uwsgi_temp_path $NGX/tmp/uwsgi;
    scgi_temp_path $NGX/tmp/scgi;

    # nginx's best here for both sizes (measured on this machine): sendfile adds a second
    # syscall and segment per response (1 KiB hits -25 %), while plain reads with buffers big
    # enough for the whole 100 KiB object beat sendfile for that size too.
    sendfile off;
    output_buffers 2 128k;
    # tcp_nopush (TCP_CORK) stalled 100 KiB responses on the 40 ms delayed-ACK timer on loopback.
    tcp_nopush off;
    tcp_nodelay on;
    # The default (1000) would make wrk reconnect every 1000 requests; hyper and the edge node
    # keep a connection for as long as the client does.
    keepalive_requests 100000000;
    keepalive_timeout 75s;

    proxy_cache_path $NGX/cache levels=1:2 keys_zone=bench:10m max_size=1g inactive=1d use_temp_path=off;

    # Idle connections kept to the origin: more than wrk's 32, so that pass-through never
    # closes and reopens one.
    upstream origin {
        server $ORIGIN;
        keepalive 64;
    }

    server {
        listen 127.0.0.1:$NGINX_PORT;

        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache bench;
            proxy_cache_key \$uri;   # the query string is left out, like the edge's query = "none"
            proxy_cache_valid 200 1d;
            add_header X-Cache-Status \$upstream_cache_status;
        }

        # Pass-through: plain proxy_pass over the keep-alive pool, no cache.
        location /pass/ {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }

    # The same cache over HTTPS, HTTP/2 and HTTP/1.1 by ALPN, like the edge's tls_listen.
    server {
        # "listen ... http2" rather than "http2 on;", which Debian 12's nginx 1.22 does not know
        # (1.25+ accepts both, with a deprecation warning for this form).
        listen 127.0.0.1:$NGINX_TLS_PORT ssl http2;
        ssl_certificate $WORK/tls/cert.pem;
        ssl_certificate_key $WORK/tls/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        # As many requests per HTTP/2 connection as over HTTP/1.1 keep-alive.
        keepalive_requests 100000000;

        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache bench;
            proxy_cache_key \$uri;
            proxy_cache_valid 200 1d;
            add_header X-Cache-Status \$upstream_cache_status;
        }
    }
}
EOF
    "$NGINX_BIN" -t -q -p "$NGX" -e "$NGX/error.log" -c "$NGX/nginx.conf" \
        || { cat "$NGX/error.log" >&2; die "nginx rejected its config"; }
    taskset -c "$SERVER_CPU" "$NGINX_BIN" -p "$NGX" -e "$NGX/error.log" -c "$NGX/nginx.conf" \
        >"$NGX/stdout.log" 2>&1 &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    if ! (wait_http nginx "$NGINX_PID" "http://127.0.0.1:$NGINX_PORT/__ready"); then
        cat "$NGX/error.log" "$NGX/stdout.log" >&2
        die "nginx did not start"
    fi
    URL[nginx]="http://127.0.0.1:$NGINX_PORT"
    SERVER_PID[nginx]="$NGINX_PID"
    prime nginx "${URL[nginx]}" X-Cache-Status HIT
    check_pass nginx "${URL[nginx]}"
    SERVERS+=(nginx)
    log "nginx on 127.0.0.1:$NGINX_PORT (CPU $SERVER_CPU)"
    URL[nginx-https]="https://127.0.0.1:$NGINX_TLS_PORT"
    SERVER_PID[nginx-https]="$NGINX_PID"
    check_hit nginx-https "${URL[nginx-https]}" 1k X-Cache-Status HIT || die "nginx-https: no hit over HTTPS"
    SERVERS+=(nginx-https)
fi

# ---------------------------------------------------------------------------------------------
# Measure. Rounds are interleaved (every cell once per round) so that a slow drift of the
# machine, e.g. a build starting elsewhere, spreads over all rows instead of biasing one.
# ---------------------------------------------------------------------------------------------
log "measuring: ${SERVERS[*]} x ${OBJECTS[*]}, $RUNS runs of ${DURATION}s each"
for run in $(seq "$RUNS"); do
    for obj in "${OBJECTS[@]}"; do
        for server in "${SERVERS[@]}"; do
            # The router's node sends everything to its bucket: it has no pass-through row.
            [[ "$obj" == pass && "$server" == edge+router ]] && continue
            # HTTPS: the 1 KiB hit on a keep-alive connection only.
            [[ "$server" == *-https && "$obj" != 1k ]] && continue
            run_wrk_settled "$server" "$obj" "${URL[$server]}${OBJECT_PATH[$obj]}" "$run"
        done
    done
done

# Compressed hits against identity hits of the same 4 KiB text object on the edge node
# (`compress = true`): the variant is built once and stored, so a compressed hit should cost no
# more CPU than an identity one.
COMPRESS_CELLS=()
if [[ -n "${URL[edge]:-}" ]]; then
    page="${URL[edge]}/text/page.html"
    for accept in "" "br, gzip"; do
        for _ in 1 2; do
            curl -s -o /dev/null ${accept:+-H "Accept-Encoding: $accept"} "$page" || die "priming $page failed"
        done
    done
    encoding="$(curl -s -o /dev/null -D - -H 'Accept-Encoding: br, gzip' "$page" | tr -d '\r' \
        | awk -F': ' 'tolower($1) == "content-encoding" { print $2 }')"
    [[ "$encoding" == br ]] || die "edge: /text/page.html was not served with br (got '$encoding')"
    log "compression: identity vs br hits of /text/page.html, $RUNS runs of ${DURATION}s each"
    for run in $(seq "$RUNS"); do
        for cell in text-identity text-br; do
            args=()
            [[ "$cell" == text-br ]] && args=(-H "Accept-Encoding: br, gzip")
            run_wrk_settled edge "$cell" "$page" "$run" "${args[@]}"
        done
    done
    COMPRESS_CELLS=(text-identity text-br)
fi

# HTTP/2: h2load over TLS (ALPN h2) on the 1 KiB hit, 32 connections of 10 concurrent streams,
# the client pinned as wrk is. The median of RUNS runs by req/s.
H2_REQUESTS="${H2_REQUESTS:-200000}"
H2_SERVERS=()
for server in edge-https nginx-https; do
    [[ -n "${URL[$server]:-}" ]] || continue
    for run in $(seq "$RUNS"); do
        wait_quiet
        out="$WORK/h2load-$server-$run.txt"
        taskset -c "$WRK_CPU" h2load -t1 -c32 -m10 -n "$H2_REQUESTS" "${URL[$server]}/1k" >"$out" 2>&1 \
            || { cat "$out" >&2; die "h2load failed against $server"; }
        grep -q ' 0 failed, 0 errored' "$out" || { cat "$out" >&2; die "$server: h2load saw failed requests"; }
        grep -qi 'application protocol: h2' "$out" || { cat "$out" >&2; die "$server: h2load did not negotiate h2"; }
        rps="$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$out")"
        [[ -n "$rps" ]] || { cat "$out" >&2; die "could not parse h2load output"; }
        echo "$rps" >>"$WORK/h2-$server"
        log "$(printf '%-11s h2     run %d/%d: %8.0f req/s' "$server" "$run" "$RUNS" "$rps")"
    done
    H2_SERVERS+=("$server")
done

# Still hits after the load? (An entry evicted or expired mid-run would have sent wrk's requests
# to the origin.) And anything the servers logged is worth a look.
for obj in 1k 100k; do
    if [[ -n "${URL[edge]:-}" ]]; then
        check_hit edge "${URL[edge]}" "$obj" X-Cache Hit || log "warning: edge figures may include misses"
    fi
    if [[ -n "${URL[edge+router]:-}" ]]; then
        check_hit edge+router "${URL[edge+router]}" "$obj" X-Cache Hit \
            || log "warning: edge+router figures may include misses"
    fi
    if [[ -n "${URL[nginx]:-}" ]]; then
        check_hit nginx "${URL[nginx]}" "$obj" X-Cache-Status HIT || log "warning: nginx figures may include misses"
    fi
done
for name in edge edge-router; do
    if [[ -s "$WORK/$name.log" ]]; then
        log "$name logged $(wc -l <"$WORK/$name.log") line(s) at RUST_LOG=warn; the last ones:"
        tail -n 5 "$WORK/$name.log" >&2
    fi
done
if [[ -n "${NGX:-}" ]] && grep -v 'the "user" directive' "$NGX/error.log" | grep -q .; then
    log "nginx error.log; the last lines:"
    grep -v 'the "user" directive' "$NGX/error.log" | tail -n 5 >&2
fi

# ---------------------------------------------------------------------------------------------
# Memory and locality, on the edge node: KEYS distinct 1 KiB objects (/obj/N) are stored while
# its RSS is read before and after; then hits on one key and hits spread uniformly over all
# KEYS keys, both through the same wrk Lua script so that the client's own cost is the same.
# ---------------------------------------------------------------------------------------------
FILLED=0
if [[ "$SKIP_EDGE" != 1 && "$KEYS" -gt 0 ]]; then
    cat >"$WORK/fill.lua" <<'LUA'
-- Asks for /obj/0 .. /obj/(KEYS-1), each once (then /obj/0 again), and creates DONE_FILE when
-- every one of them has been answered.
local keys = tonumber(os.getenv("KEYS"))
local done_file = os.getenv("DONE_FILE")
local next_key, answered = 0, 0
request = function()
    local key = next_key < keys and next_key or 0
    next_key = next_key + 1
    return wrk.format("GET", "/obj/" .. key)
end
response = function(status)
    answered = answered + 1
    if answered == keys then
        io.open(done_file, "w"):close()
        wrk.thread:stop()
    end
end
LUA
    for keys in 1 "$KEYS"; do
        cat >"$WORK/keys-$keys.lua" <<LUA
-- Asks for /obj/N, N uniformly random in [0, $keys). The requests are built in init, once wrk
-- has set the Host header.
local requests = {}
init = function(args)
    for i = 0, $keys - 1 do requests[i + 1] = wrk.format("GET", "/obj/" .. i) end
    math.randomseed(1)
end
request = function() return requests[math.random($keys)] end
LUA
    done
    wait_quiet
    RSS_BEFORE="$(awk '/^VmRSS:/ {print $2}' "/proc/$EDGE_PID/status")"
    log "memory: storing $KEYS objects of 1 KiB in the edge node (RSS now $((RSS_BEFORE / 1024)) MiB)"
    # wrk runs for its whole duration even when its threads stop: stop it once every key is in.
    KEYS="$KEYS" DONE_FILE="$WORK/filled" taskset -c "$WRK_CPU" wrk -t1 -c32 -d600s -s "$WORK/fill.lua" \
        "${URL[edge]}/" >"$WORK/fill.txt" 2>&1 &
    FILL_PID=$!
    PIDS+=("$FILL_PID")
    for _ in $(seq 6000); do
        [[ -e "$WORK/filled" ]] && break
        kill -0 "$FILL_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -INT "$FILL_PID" 2>/dev/null || true
    wait "$FILL_PID" 2>/dev/null || true
    [[ -e "$WORK/filled" ]] || { cat "$WORK/fill.txt" >&2; die "storing $KEYS objects did not finish within 600 s"; }
    RSS_AFTER="$(awk '/^VmRSS:/ {print $2}' "/proc/$EDGE_PID/status")"
    # Every object must still be there, or the spread hits would measure misses.
    FILL_MISSES=0
    for i in $(seq 0 $((KEYS / 20 > 0 ? KEYS / 20 : 1)) $((KEYS - 1))); do
        curl -sS -D - -o /dev/null --max-time 10 "${URL[edge]}/obj/$i" | grep -qi '^x-cache: *Hit' \
            || FILL_MISSES=$((FILL_MISSES + 1))
    done
    ((FILL_MISSES == 0)) || log "warning: $FILL_MISSES of 20 sampled objects were not cached; the spread row includes misses"
    log "memory: RSS $((RSS_BEFORE / 1024)) MiB -> $((RSS_AFTER / 1024)) MiB for $KEYS objects"
    FILLED=1
    log "locality: hits on one key vs spread over $KEYS keys, $RUNS runs of ${DURATION}s each"
    for run in $(seq "$RUNS"); do
        for cell in one spread; do
            keys=1
            [[ "$cell" == spread ]] && keys="$KEYS"
            run_wrk_settled edge "$cell" "${URL[edge]}/" "$run" -s "$WORK/keys-$keys.lua"
        done
    done
fi

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
fmt_us() { awk -v x="$1" 'BEGIN { if (x >= 10000) printf "%.1f ms", x / 1000; else printf "%d µs", x }'; }

if [[ "$SKIP_FUNCTION" != 1 ]]; then
    echo
    echo "Micro-benchmark (bench_function, pinned to CPU $SERVER_CPU), RUST_BACKTRACE unset:"
    echo
    sed 's/^/    /' "$WORK/micro-backtrace-unset.txt"
    echo
    echo "The same with RUST_BACKTRACE=1:"
    echo
    sed 's/^/    /' "$WORK/micro-backtrace-1.txt"
    if ((${#MICRO_NOTES[@]})); then
        echo
        echo "Warning: other processes used more than ${NOISE_LIMIT}% of a core during the" \
            "micro-benchmark with ${MICRO_NOTES[*]}: its figures may be inflated."
    fi
    echo
    echo "Isolation (bench_isolation, ${ISOLATION_SECONDS}s per phase):"
    echo
    sed 's/^/    /' "$WORK/isolation.txt"
fi

echo
echo "wrk ${WRK_ARGS[*]} (pinned to CPU $WRK_CPU), servers pinned to CPU $SERVER_CPU;" \
    "each row the median run by req/s of $RUNS (undisturbed runs only, where a cell has any)." \
    "$(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r)."
echo
echo "| object | server | req/s | p50 | p99 | × hyper | CPU/req |"
echo "|---|---|---:|---:|---:|---:|---:|"
declare -A RPS
for obj in "${OBJECTS[@]}"; do
    read -r hyper_rps _ _ _ _ < <(median hyper "$obj")
    for server in "${SERVERS[@]}"; do
        [[ -s "$WORK/cell-$server-$obj" ]] || continue
        read -r rps p50 p99 clean cpu < <(median "$server" "$obj")
        RPS[$server-$obj]="$rps"
        ratio="$(awk -v a="$rps" -v b="$hyper_rps" 'BEGIN { printf "%.2f", a / b }')"
        mark=""
        if ((!clean)); then mark=" (disturbed)"; fi
        # For `pass`, hyper is the origin alone: the ceiling of a proxy in front of it.
        name="$server"
        [[ "$obj" == pass && "$server" == hyper ]] && name="origin alone"
        printf '| %s | %s | %.0f%s | %s | %s | %s | %s µs |\n' "${OBJECT_LABEL[$obj]}" "$name" "$rps" \
            "$mark" "$(fmt_us "$p50")" "$(fmt_us "$p99")" "$ratio" "$cpu"
    done
done
echo
echo "CPU/req: the server's CPU time (user + system, from /proc/PID/stat before and after the run)" \
    "per request answered; it compares servers even where wrk is the limit (100 KiB)."
echo
declare -A H2_RPS
if ((${#H2_SERVERS[@]})); then
    echo "HTTP/2 over TLS: h2load -t1 -c32 -m10 -n $H2_REQUESTS (pinned to CPU $WRK_CPU), the 1 KiB hit;" \
        "the median of $RUNS runs."
    echo
    echo "| server | req/s |"
    echo "|---|---:|"
    for server in "${H2_SERVERS[@]}"; do
        H2_RPS[$server]="$(sort -n "$WORK/h2-$server" | awk -v n="$RUNS" 'NR == int(n / 2) + 1')"
        printf '| %s (h2) | %.0f |\n' "$server" "${H2_RPS[$server]}"
    done
    echo
fi
if ((FILLED)); then
    read -r one_rps one_p50 one_p99 one_clean one_cpu < <(median edge one)
    read -r spread_rps spread_p50 spread_p99 spread_clean spread_cpu < <(median edge spread)
    RPS[edge-one]="$one_rps"
    RPS[edge-spread]="$spread_rps"
    PER_OBJECT="$(( (RSS_AFTER - RSS_BEFORE) * 1024 / KEYS ))"
    echo "Memory and locality (edge, $KEYS distinct 1 KiB objects /obj/N, hits through a wrk Lua script):"
    echo
    echo "| hits | req/s | p50 | p99 | × one key | CPU/req |"
    echo "|---|---:|---:|---:|---:|---:|"
    for cell in one spread; do
        if [[ "$cell" == one ]]; then
            label="one key"; set -- "$one_rps" "$one_p50" "$one_p99" "$one_clean" "$one_cpu"
        else
            label="$KEYS keys, uniform"; set -- "$spread_rps" "$spread_p50" "$spread_p99" "$spread_clean" "$spread_cpu"
        fi
        mark=""
        if (($4 == 0)); then mark=" (disturbed)"; fi
        printf '| %s | %.0f%s | %s | %s | %s | %s µs |\n' "$label" "$1" "$mark" "$(fmt_us "$2")" \
            "$(fmt_us "$3")" "$(awk -v a="$1" -v b="$one_rps" 'BEGIN { printf "%.2f", a / b }')" "$5"
    done
    echo
    echo "RSS $((RSS_BEFORE / 1024)) MiB before storing the $KEYS objects, $((RSS_AFTER / 1024)) MiB after:" \
        "$PER_OBJECT bytes per 1 KiB object ($FILL_MISSES of 20 sampled objects missing)."
    echo
fi
if ((${#COMPRESS_CELLS[@]})); then
    echo "Compression (edge, compress = true, 4 KiB text/html from a static origin, hits):"
    echo
    echo "| hits | body | req/s | p50 | p99 | CPU/req |"
    echo "|---|---:|---:|---:|---:|---:|"
    declare -A COMPRESS_CPU
    for cell in "${COMPRESS_CELLS[@]}"; do
        read -r rps p50 p99 clean cpu < <(median edge "$cell")
        COMPRESS_CPU[$cell]="$cpu"
        mark=""
        if ((!clean)); then mark=" (disturbed)"; fi
        label="identity (no Accept-Encoding)"
        accept=()
        if [[ "$cell" == text-br ]]; then
            label="br (Accept-Encoding: br, gzip)"
            accept=(-H "Accept-Encoding: br, gzip")
        fi
        size="$(curl -s -o /dev/null -w '%{size_download}' "${accept[@]}" "${URL[edge]}/text/page.html")"
        printf '| %s | %s B | %.0f%s | %s | %s | %s µs |\n' "$label" "$size" "$rps" "$mark" \
            "$(fmt_us "$p50")" "$(fmt_us "$p99")" "$cpu"
    done
    echo
fi
if ((${#NOISY_CELLS[@]})); then
    echo "Warning: other processes used more than ${NOISE_LIMIT}% of a core during:" \
        "${NOISY_CELLS[*]}. Those runs were repeated and left out of the medians; a row marked" \
        "(disturbed) had no undisturbed run and is unreliable: rerun on a quiet machine."
    echo
fi
if [[ -n "${RPS[edge+router-1k]:-}" && -n "${RPS[edge-1k]:-}" ]]; then
    for obj in "${OBJECTS[@]}"; do
        [[ -n "${RPS[edge+router-$obj]:-}" && -n "${RPS[edge-$obj]:-}" ]] || continue
        printf 'edge+router / edge, %s: %s\n' "${OBJECT_LABEL[$obj]}" \
            "$(awk -v a="${RPS[edge+router-$obj]}" -v b="${RPS[edge-$obj]}" 'BEGIN { printf "%.2f×", a / b }')"
    done
    echo
fi
if [[ -n "${RPS[edge-1k]:-}" ]]; then
    verdict="$(awk -v a="${RPS[edge-1k]}" -v b="${RPS[hyper-1k]}" \
        'BEGIN { r = a / b; printf "%s (%.2f×)", (r >= 0.85 ? "MET" : "NOT MET"), r }')"
    echo "Bar: edge 1 KiB hit ≥ 0.85× hyper req/s — $verdict"
else
    echo "Bar: edge 1 KiB hit ≥ 0.85× hyper req/s — not measured (edge left out)"
fi
if [[ -n "${RPS[edge-pass]:-}" && -n "${RPS[nginx-pass]:-}" ]]; then
    verdict="$(awk -v a="${RPS[edge-pass]}" -v b="${RPS[nginx-pass]}" \
        'BEGIN { r = a / b; printf "%s (%.2f×)", (r >= 1.0 ? "MET" : "NOT MET"), r }')"
    echo "Bar: edge 1 KiB pass-through ≥ 1.0× nginx proxy_pass req/s — $verdict"
else
    echo "Bar: edge 1 KiB pass-through ≥ 1.0× nginx proxy_pass req/s — not measured (edge or nginx left out)"
fi
if ((${#COMPRESS_CELLS[@]})); then
    verdict="$(awk -v a="${COMPRESS_CPU[text-br]}" -v b="${COMPRESS_CPU[text-identity]}" \
        'BEGIN { r = a / b; printf "%s (%.2f×)", (r <= 1.1 ? "MET" : "NOT MET"), r }')"
    echo "Bar: CPU per compressed (br) hit ≤ 1.1× per identity hit of the same object — $verdict"
fi
if [[ -n "${RPS[edge-https-1k]:-}" && -n "${RPS[nginx-https-1k]:-}" ]]; then
    verdict="$(awk -v a="${RPS[edge-https-1k]}" -v b="${RPS[nginx-https-1k]}" \
        'BEGIN { r = a / b; printf "%s (%.2f×)", (r >= 1.0 ? "MET" : "NOT MET"), r }')"
    echo "Bar: edge HTTPS 1 KiB hit (keep-alive) ≥ 1.0× nginx ssl + proxy_cache req/s — $verdict"
else
    echo "Bar: edge HTTPS 1 KiB hit ≥ 1.0× nginx ssl + proxy_cache req/s — not measured (edge or nginx left out)"
fi
if [[ -n "${H2_RPS[edge-https]:-}" && -n "${H2_RPS[nginx-https]:-}" ]]; then
    echo "HTTP/2 1 KiB hit, edge / nginx: $(awk -v a="${H2_RPS[edge-https]}" -v b="${H2_RPS[nginx-https]}" \
        'BEGIN { printf "%.2f×", a / b }')"
fi
if ((FILLED)); then
    verdict="$(awk -v b="$PER_OBJECT" 'BEGIN { printf "%s (%d bytes)", (b <= 1536 ? "MET" : "NOT MET"), b }')"
    echo "Bar: RSS per cached 1 KiB object ≤ 1.5 KiB — $verdict"
    verdict="$(awk -v a="${RPS[edge-spread]}" -v b="${RPS[edge-one]}" \
        'BEGIN { r = a / b; printf "%s (%.2f×)", (r >= 0.85 ? "MET" : "NOT MET"), r }')"
    echo "Bar: hits spread over $KEYS keys ≥ 0.85× hits on one key — $verdict"
fi
if [[ -n "${RPS[edge+router-1k]:-}" ]]; then
    verdict="$(awk -v a="${RPS[edge+router-1k]}" -v b="${RPS[edge-1k]}" \
        'BEGIN { r = a / b; printf "%s (%.2f×)", (r >= 0.85 ? "MET" : "NOT MET"), r }')"
    echo "Bar: edge+router 1 KiB hit ≥ 0.85× edge req/s — $verdict"
    for backtrace in unset 1; do
        # bench_function's verdict line: "router adds X µs at p50 (...); bar ≤ 15 µs: MET".
        added="$(sed -n 's/^router adds \([0-9.]*\) µs at p50.*: \(.*\)$/\2 (\1 µs)/p' \
            "$WORK/micro-backtrace-$backtrace.txt")"
        echo "Bar: router adds ≤ 15 µs per request at p50 (RUST_BACKTRACE=$backtrace) — ${added:-not found in the output}"
        # Decision replay (runtime/src/wasm/replay.rs): "replayed router adds X µs at p50 (...); bar ≤ 1 µs: MET"
        # and "never-repeating inputs with replay on cost X (...); bar ≤ 1.10x: MET".
        replayed="$(sed -n 's/^replayed router adds \([0-9.]*\) µs at p50.*: \(.*\)$/\2 (\1 µs)/p' \
            "$WORK/micro-backtrace-$backtrace.txt")"
        echo "Bar: replayed router adds ≤ 1 µs at p50 (RUST_BACKTRACE=$backtrace) — ${replayed:-not found in the output}"
        never="$(sed -n 's/^never-repeating inputs with replay on cost \([0-9.]*x\) .*: \(.*\)$/\2 (\1)/p' \
            "$WORK/micro-backtrace-$backtrace.txt")"
        echo "Bar: never-repeating inputs cost ≤ 1.10× with replay on (RUST_BACKTRACE=$backtrace) — ${never:-not found in the output}"
    done
    verdict="$(awk -v a="${RPS[edge+router-1k]}" -v b="${RPS[edge-1k]}" \
        'BEGIN { r = a / b; printf "%s (%.2f×)", (r >= 0.9 ? "MET" : "NOT MET"), r }')"
    echo "Bar: edge+router 1 KiB hit ≥ 0.9× edge req/s with decision replay — $verdict"
    isolated="$(sed -n 's/^bar: .*: \(.*\)$/\1/p' "$WORK/isolation.txt")"
    echo "Bar: function-less p50 ≤ 2 ms while 8 clients flood a spinning function — ${isolated:-not found in the output}"
else
    echo "Bar: edge+router 1 KiB hit ≥ 0.85× edge req/s — not measured (functions left out)"
fi
