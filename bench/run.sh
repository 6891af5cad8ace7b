#!/usr/bin/env bash
# Cache-hit throughput benchmark: plain hyper vs. the edge node vs. nginx proxy_cache.
#
# Run from the repo root:   bash bench/run.sh
# Environment:
#   DURATION=10   seconds per wrk run
#   RUNS=3        runs per cell (server x object); the median by req/s is reported
#   SKIP_EDGE=1   leave the edge node out (e.g. while it does not build)
#   SKIP_NGINX=1  leave nginx out
#
# See bench/README.md for what the numbers mean.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION="${DURATION:-10}"
RUNS="${RUNS:-3}"
SKIP_EDGE="${SKIP_EDGE:-0}"
SKIP_NGINX="${SKIP_NGINX:-0}"

# The load generator always gets CPU 1 and every server under test CPU 0: on a 2-core machine an
# unpinned run is bimodal (it depends on where connections land), so pinning is what makes the
# rows comparable.
SERVER_CPU=0
WRK_CPU=1
WRK_ARGS=(-t1 -c32 "-d${DURATION}s" --latency)

OBJECTS=(1k 100k)
declare -A OBJECT_SIZE=([1k]=1024 [100k]=102400)
declare -A OBJECT_LABEL=([1k]="1 KiB" [100k]="100 KiB")

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

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
if [[ "$SKIP_NGINX" != 1 ]] && ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
    need_apt+=(nginx)
fi
if ((${#need_apt[@]})); then
    log "installing ${need_apt[*]}"
    # Debian's policy-rc.d in containers keeps the packaged nginx service from starting; we run
    # our own instance below with its own config.
    apt-get update && apt-get install -y wrk nginx
fi
NGINX_BIN="$(command -v nginx || echo /usr/sbin/nginx)"
for tool in taskset curl python3 awk; do
    command -v "$tool" >/dev/null || die "$tool is required"
done

# ---------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------
if [[ "$SKIP_EDGE" == 1 ]]; then
    log "building bench_origin (SKIP_EDGE=1: edge node left out)"
    cargo build --release -p edge-runtime --example bench_origin
else
    log "building edge and bench_origin"
    cargo build --release -p edge-runtime --bin edge --example bench_origin
fi
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
ORIGIN_BIN="$TARGET_DIR/release/examples/bench_origin"
EDGE_BIN="$TARGET_DIR/release/edge"

# RUST_BACKTRACE=1 (set in this environment) makes every error capture a backtrace, which costs
# microseconds per request on an error path; benchmark without it.
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
        kill -0 "$pid" 2>/dev/null || die "$name exited during startup (log: see above)"
        code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)"
        [[ "$code" != 000 ]] && return 0
        sleep 0.05
    done
    die "$name did not answer on $url within 10 s"
}

# start_origin NAME [PREFIX...]: start bench_origin (behind an optional command prefix such as
# taskset) on a free port; sets ORIGIN_ADDR_RESULT to its address.
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
}

# prime NAME BASEURL HEADER VALUE-REGEX: fetch each object twice; the second answer must be a
# cache hit with the full body, otherwise the benchmark would measure the origin path.
prime() {
    local name="$1" base="$2" header="$3" want="$4" obj headers size
    for obj in "${OBJECTS[@]}"; do
        curl -sS -o /dev/null --max-time 10 "$base/$obj" || die "$name: priming $base/$obj failed"
        headers="$WORK/prime-$name-$obj.headers"
        size="$(curl -sS -D "$headers" -o /dev/null -w '%{size_download}' --max-time 10 "$base/$obj")" \
            || die "$name: second request to $base/$obj failed"
        if ! grep -qiE "^$header:[[:space:]]*$want" "$headers"; then
            cat "$headers" >&2
            die "$name: second GET $base/$obj was not a cache hit (expected '$header: $want'; headers above)"
        fi
        [[ "$size" == "${OBJECT_SIZE[$obj]}" ]] \
            || die "$name: cached $base/$obj has $size bytes, expected ${OBJECT_SIZE[$obj]}"
    done
    log "$name: cache primed, second requests were hits"
}

# to_us VALUE: wrk latency ("812.00us", "1.23ms", "2.01s") to microseconds.
to_us() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) x = v + 0; else if (v ~ /ms$/) x = v * 1000;
        else if (v ~ /m$/) x = v * 60e6; else if (v ~ /s$/) x = v * 1e6; else x = -1;
        printf "%.0f", x }'
}

# run_wrk SERVER OBJECT URL RUN: one wrk run; appends "rps p50_us p99_us" to the cell's file.
run_wrk() {
    local server="$1" obj="$2" url="$3" run="$4" out rps p50 p99 bad errs
    out="$WORK/wrk-$server-$obj-$run.txt"
    taskset -c "$WRK_CPU" wrk "${WRK_ARGS[@]}" "$url" >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed"; }
    rps="$(awk '/^Requests\/sec:/ {print $2}' "$out")"
    p50="$(awk '$1 == "50%" {print $2}' "$out")"
    p99="$(awk '$1 == "99%" {print $2}' "$out")"
    [[ -n "$rps" && -n "$p50" && -n "$p99" ]] || { cat "$out" >&2; die "could not parse wrk output"; }
    # Error answers are usually faster than real ones; a run with any is not a measurement.
    bad="$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")"
    [[ -z "$bad" ]] || { cat "$out" >&2; die "$server $obj: $bad non-2xx/3xx responses"; }
    errs="$(grep -E '^ *Socket errors:' "$out" || true)"
    [[ -z "$errs" ]] || log "warning: $server $obj run $run:$errs"
    printf '%s %s %s\n' "$rps" "$(to_us "$p50")" "$(to_us "$p99")" >>"$WORK/cell-$server-$obj"
    log "$(printf '%-5s %-5s run %d/%d: %10.0f req/s  p50 %s  p99 %s' \
        "$server" "$obj" "$run" "$RUNS" "$rps" "$p50" "$p99")"
}

# median SERVER OBJECT: the run with the median req/s ("rps p50 p99"); with an even RUNS, the
# upper of the two middle runs.
median() {
    sort -n -k1,1 "$WORK/cell-$1-$2" | awk -v n="$RUNS" 'NR == int(n / 2) + 1'
}

# ---------------------------------------------------------------------------------------------
# Servers. All are started up front and stay idle while another is measured, so the runs can be
# interleaved (below).
# ---------------------------------------------------------------------------------------------
SERVERS=()
declare -A URL

# 1. Plain hyper: the ceiling. Pinned like every server under test.
start_origin hyper taskset -c "$SERVER_CPU"
URL[hyper]="http://$ORIGIN_ADDR_RESULT"
SERVERS+=(hyper)
log "hyper baseline on $ORIGIN_ADDR_RESULT (CPU $SERVER_CPU)"

# 2. The origin behind the edge node and nginx: unpinned; after priming it sees no traffic.
if [[ "$SKIP_EDGE" != 1 || "$SKIP_NGINX" != 1 ]]; then
    start_origin origin
    ORIGIN="$ORIGIN_ADDR_RESULT"
    log "origin on $ORIGIN"
fi

# 3. The edge node.
if [[ "$SKIP_EDGE" != 1 ]]; then
    EDGE_PORT="$(free_port)"
    cat >"$WORK/edge.toml" <<EOF
[server]
listen = "127.0.0.1:$EDGE_PORT"

[cache]
max_size = "256 MiB"
max_object_size = "16 MiB"

[origins.app]
type = "http"
targets = ["http://$ORIGIN"]
connect_timeout = "2s"
response_timeout = "30s"

[[behaviors]]
path = "*"
origin = "app"
cache = { min_ttl = "0s", default_ttl = "1d", max_ttl = "365d" }
cache_key = { query = "none" }
EOF
    # RUST_LOG=warn keeps per-request logging off, as in production.
    RUST_LOG=warn taskset -c "$SERVER_CPU" "$EDGE_BIN" serve --config "$WORK/edge.toml" \
        >"$WORK/edge.log" 2>&1 &
    EDGE_PID=$!
    PIDS+=("$EDGE_PID")
    if ! (wait_http edge "$EDGE_PID" "http://127.0.0.1:$EDGE_PORT/__ready"); then
        cat "$WORK/edge.log" >&2
        die "edge node did not start (config: see $0; set SKIP_EDGE=1 to benchmark without it)"
    fi
    URL[edge]="http://127.0.0.1:$EDGE_PORT"
    prime edge "${URL[edge]}" X-Cache Hit
    SERVERS+=(edge)
    log "edge on 127.0.0.1:$EDGE_PORT (CPU $SERVER_CPU)"
fi

# 4. nginx with proxy_cache: the reference cache.
if [[ "$SKIP_NGINX" != 1 ]]; then
    NGINX_PORT="$(free_port)"
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

    upstream origin {
        server $ORIGIN;
        keepalive 16;
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
    prime nginx "${URL[nginx]}" X-Cache-Status HIT
    SERVERS+=(nginx)
    log "nginx on 127.0.0.1:$NGINX_PORT (CPU $SERVER_CPU)"
fi

# ---------------------------------------------------------------------------------------------
# Measure. Rounds are interleaved (every cell once per round) so that a slow drift of the
# machine, e.g. a build starting elsewhere, spreads over all rows instead of biasing one.
# ---------------------------------------------------------------------------------------------
# Another build on this 2-core machine takes CPU from the server or from wrk; say so, since it
# makes the figures (ratios too) unreliable.
NOISY=0
check_quiet() {
    if pgrep -x rustc >/dev/null || pgrep -x cargo >/dev/null; then
        NOISY=1
        log "warning: a cargo/rustc process is running; figures from this round are unreliable"
    fi
}
log "measuring: ${SERVERS[*]} x ${OBJECTS[*]}, $RUNS runs of ${DURATION}s each"
for run in $(seq "$RUNS"); do
    check_quiet
    for obj in "${OBJECTS[@]}"; do
        for server in "${SERVERS[@]}"; do
            run_wrk "$server" "$obj" "${URL[$server]}/$obj" "$run"
        done
    done
done

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
fmt_us() { awk -v x="$1" 'BEGIN { if (x >= 10000) printf "%.1f ms", x / 1000; else printf "%d µs", x }'; }

echo
echo "wrk ${WRK_ARGS[*]} (pinned to CPU $WRK_CPU), servers pinned to CPU $SERVER_CPU;" \
    "median of $RUNS runs by req/s. $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r)."
echo
echo "| object | server | req/s | p50 | p99 | × hyper |"
echo "|---|---|---:|---:|---:|---:|"
declare -A RPS
for obj in "${OBJECTS[@]}"; do
    read -r hyper_rps _ _ < <(median hyper "$obj")
    for server in "${SERVERS[@]}"; do
        read -r rps p50 p99 < <(median "$server" "$obj")
        RPS[$server-$obj]="$rps"
        ratio="$(awk -v a="$rps" -v b="$hyper_rps" 'BEGIN { printf "%.2f", a / b }')"
        printf '| %s | %s | %.0f | %s | %s | %s |\n' "${OBJECT_LABEL[$obj]}" "$server" "$rps" \
            "$(fmt_us "$p50")" "$(fmt_us "$p99")" "$ratio"
    done
done
echo
if ((NOISY)); then
    echo "Warning: a cargo/rustc build ran during the measurement; rerun on a quiet machine."
    echo
fi
if [[ -n "${RPS[edge-1k]:-}" ]]; then
    verdict="$(awk -v a="${RPS[edge-1k]}" -v b="${RPS[hyper-1k]}" \
        'BEGIN { r = a / b; printf "%s (%.2f×)", (r >= 0.8 ? "MET" : "NOT MET"), r }')"
    echo "Bar: edge 1 KiB hit ≥ 0.8× hyper req/s — $verdict"
else
    echo "Bar: edge 1 KiB hit ≥ 0.8× hyper req/s — not measured (edge left out)"
fi
