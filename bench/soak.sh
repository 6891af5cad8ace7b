#!/usr/bin/env bash
# Soak test (not in CI): mixed traffic against a real `edge serve` for SOAK_SECONDS, reporting
# every failure and the node's memory at the start and the end.
#
# Traffic, from SOAK_WORKERS curl loops (keep-alive, 40 requests per curl):
#   - static hits and misses (a static origin in a temp dir; `?miss=` makes a new cache key),
#   - a dynamic origin (runtime/examples/bench_origin.rs): `/1k` mostly hits, `/100k?miss=` misses,
#   - edge functions: a WAT tagger on viewer-response everywhere, and two hostile ones (an
#     infinite loop under a 5 ms CPU limit, and a trap) on their own paths,
#   - a 404 path,
# and one admin loop: upload a new tagger version, publish it, now and then roll back, and
# invalidate `/static/*`, about once a second.
#
# A request fails when its status or body size is not the one its path must give (200 with the
# file's size, 503 for the loop, 502 for the trap, 404), or the connection fails. The node must
# log no panic and still run at the end.
#
# Run from the repo root:   bash bench/soak.sh
# Environment:
#   SOAK_SECONDS=600   how long the traffic runs
#   SOAK_WORKERS=4     concurrent curl loops
#   SOAK_PROFILE=release   cargo profile of the `edge` and `bench_origin` builds (or `debug`)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SOAK_SECONDS="${SOAK_SECONDS:-600}"
SOAK_WORKERS="${SOAK_WORKERS:-4}"
SOAK_PROFILE="${SOAK_PROFILE:-release}"
TOKEN="soak-admin-token-0123456789abcdef"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'soak: error: %s\n' "$*" >&2; exit 1; }

for tool in curl awk; do
    command -v "$tool" >/dev/null || die "$tool is required"
done

# Every background process is recorded and stopped on exit, whatever the reason.
WORK="$(mktemp -d -t edge-soak.XXXXXX)"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# ---------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------
if [[ "$SOAK_PROFILE" == release ]]; then
    log "building edge and bench_origin (release)"
    cargo build --release --bin edge --example bench_origin
    BIN=target/release
else
    log "building edge and bench_origin ($SOAK_PROFILE)"
    cargo build --profile "$SOAK_PROFILE" --bin edge --example bench_origin
    BIN="target/$SOAK_PROFILE"
    [[ "$SOAK_PROFILE" == dev ]] && BIN=target/debug
fi

# ---------------------------------------------------------------------------------------------
# Origins, functions, config
# ---------------------------------------------------------------------------------------------
mkdir -p "$WORK/site/static" "$WORK/data" "$WORK/compiled"
for i in $(seq 0 19); do
    head -c $((1000 + i)) /dev/zero | tr '\0' 'x' >"$WORK/site/static/f$i.txt"
done

"$BIN/examples/bench_origin" --listen 127.0.0.1:0 >"$WORK/origin.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 100); do
    grep -q '^listening on ' "$WORK/origin.log" && break
    sleep 0.1
done
ORIGIN="$(awk '/^listening on /{print $3; exit}' "$WORK/origin.log")"
[[ -n "$ORIGIN" ]] || die "bench_origin did not start: $(cat "$WORK/origin.log")"

# A viewer-response function that tags responses with `x-version: VERSION`.
tagger() {
    local version="$1"
    cat <<EOF
(module
  (import "edge_v1" "response_set_header" (func \$set (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "x-version") (data (i32.const 16) "$version")
  (func (export "viewer-response") (result i32)
    (drop (call \$set (i32.const 0) (i32.const 9) (i32.const 16) (i32.const ${#version})))
    (i32.const 0)))
EOF
}
tagger 1 >"$WORK/tag.wat"
cat >"$WORK/loop.wat" <<'EOF'
(module (memory (export "memory") 1)
  (func (export "viewer-request") (result i32) (loop $l (br $l)) (i32.const 0)))
EOF
cat >"$WORK/trap.wat" <<'EOF'
(module (memory (export "memory") 1)
  (func (export "viewer-request") (result i32) unreachable))
EOF

cat >"$WORK/edge.toml" <<EOF
[server]
listen = "127.0.0.1:0"
compile_cache = "$WORK/compiled"

[admin]
listen = "127.0.0.1:0"
token = "$TOKEN"
data_dir = "$WORK/data"

[cache]
max_size = "64 MiB"

[origins.bucket]
type = "static"
root = "$WORK/site"

[origins.app]
type = "http"
targets = ["http://$ORIGIN"]

[functions.tag]
module = "$WORK/tag.wat"

[functions.loop]
module = "$WORK/loop.wat"
cpu_limit = "5ms"

[functions.trap]
module = "$WORK/trap.wat"

[[behaviors]]
path = "/hostile/loop/*"
origin = "bucket"
functions = { viewer_request = "loop" }

[[behaviors]]
path = "/hostile/trap/*"
origin = "bucket"
functions = { viewer_request = "trap" }

[[behaviors]]
path = "/1*"
origin = "app"
cache_key = { query = "all" }
functions = { viewer_response = "tag" }

[[behaviors]]
path = "*"
origin = "bucket"
cache_key = { query = "all" }
functions = { viewer_response = "tag" }
EOF

# ---------------------------------------------------------------------------------------------
# The node
# ---------------------------------------------------------------------------------------------
# warn: no access log (it would be millions of lines); function failures are still logged.
: >"$WORK/edge.log"
RUST_LOG=warn,edge::cli=info "$BIN/edge" serve --config "$WORK/edge.toml" >"$WORK/edge.log" 2>&1 &
EDGE_PID=$!
PIDS+=("$EDGE_PID")
for _ in $(seq 300); do
    grep -q 'edge node listening' "$WORK/edge.log" && break
    kill -0 "$EDGE_PID" 2>/dev/null || die "edge exited: $(cat "$WORK/edge.log")"
    sleep 0.1
done
LINE="$(grep -m1 'edge node listening' "$WORK/edge.log")" || die "edge did not start: $(cat "$WORK/edge.log")"
ADDR="$(sed -n 's/.*addr=\([0-9.:]*\).*/\1/p' <<<"$LINE")"
ADMIN="$(sed -n 's/.*admin=\([0-9.:]*\).*/\1/p' <<<"$LINE")"
BASE="http://$ADDR"
ADMIN_URL="http://$ADMIN"

rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$EDGE_PID/status"; }
hwm_kib() { awk '/^VmHWM:/{print $2}' "/proc/$EDGE_PID/status"; }

# One pass over every path, so "start" is a node with its code paths and functions warm.
for path in /static/f0.txt /1k /hostile/loop/x /hostile/trap/x; do
    curl -s -o /dev/null "$BASE$path" || true
done
RSS_START="$(rss_kib)"
STARTED="$(date +%s)"
END=$((STARTED + SOAK_SECONDS))
log "node $BASE (admin $ADMIN_URL), origin $ORIGIN; $SOAK_SECONDS s of traffic from $SOAK_WORKERS workers"

# ---------------------------------------------------------------------------------------------
# Traffic
# ---------------------------------------------------------------------------------------------
worker() {
    local id="$1" n=0 args i r
    while (($(date +%s) < END)); do
        args=()
        for i in $(seq 40); do
            n=$((n + 1))
            r=$((RANDOM % 20))
            case "$r" in
            0 | 1 | 2 | 3 | 4 | 5 | 6) args+=("$BASE/static/f$((RANDOM % 20)).txt") ;;
            7 | 8) args+=("$BASE/static/f$((RANDOM % 20)).txt?miss=$id-$n") ;;
            9 | 10 | 11 | 12) args+=("$BASE/1k?n=$((RANDOM % 50))") ;;
            13 | 14) args+=("$BASE/100k?miss=$id-$n") ;;
            15) args+=("$BASE/hostile/loop/$n") ;;
            16) args+=("$BASE/hostile/trap/$n") ;;
            17) args+=("$BASE/nope/$n") ;;
            *) args+=("$BASE/static/f$((RANDOM % 20)).txt?miss=$((RANDOM % 100))") ;;
            esac
            args+=(-o /dev/null)
        done
        # Each -o pairs with the URL before it; one curl keeps its connection alive.
        curl -s --max-time 30 -w '%{http_code} %{size_download} %{url_effective}\n' "${args[@]}" \
            >>"$WORK/traffic-$id.log" 2>/dev/null || true
    done
}

admin_loop() {
    local v=1 code
    call() { # METHOD PATH [BODY-FILE|JSON] -> status code
        local method="$1" path="$2" body="${3:-}"
        if [[ "$body" == @* ]]; then
            curl -s -o /dev/null -w '%{http_code}' -X "$method" -H "authorization: Bearer $TOKEN" --data-binary "$body" "$ADMIN_URL$path"
        else
            curl -s -o /dev/null -w '%{http_code}' -X "$method" -H "authorization: Bearer $TOKEN" -d "$body" "$ADMIN_URL$path"
        fi
    }
    record() { printf '%s %s %s\n' "$1" "$2" "$3" >>"$WORK/admin.log"; }
    while (($(date +%s) < END)); do
        v=$((v + 1))
        tagger "$v" >"$WORK/tag-next.wat"
        code="$(call PUT /functions/tag "@$WORK/tag-next.wat")" || code=000
        record upload 201 "$code"
        code="$(call POST /functions/tag/publish "")" || code=000
        record publish 200 "$code"
        if ((v % 5 == 0)); then
            code="$(call POST /functions/tag/rollback "")" || code=000
            record rollback 200 "$code"
        fi
        code="$(call POST /invalidations '{"paths":["/static/*"]}')" || code=000
        record invalidate 201 "$code"
        sleep 1
    done
}

rss_sampler() {
    while (($(date +%s) < END)); do
        printf '%s %s\n' "$(($(date +%s) - STARTED))" "$(rss_kib)" >>"$WORK/rss.log"
        sleep 10
    done
}

WORKERS=()
for id in $(seq "$SOAK_WORKERS"); do
    worker "$id" &
    WORKERS+=("$!")
done
admin_loop &
WORKERS+=("$!")
rss_sampler &
WORKERS+=("$!")
for pid in "${WORKERS[@]}"; do
    wait "$pid"
done
ELAPSED=$(($(date +%s) - STARTED))

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
ALIVE=yes
kill -0 "$EDGE_PID" 2>/dev/null || ALIVE=no
RSS_END="$( [[ "$ALIVE" == yes ]] && rss_kib || echo 0)"
RSS_PEAK="$( [[ "$ALIVE" == yes ]] && hwm_kib || echo 0)"
PANICS="$(grep -c 'panicked' "$WORK/edge.log" || true)"

cat "$WORK"/traffic-*.log | awk -v fails="$WORK/failures.log" '
    {
        code = $1; size = $2; url = $3; path = url
        sub(/^http:\/\/[^\/]*/, "", path); sub(/\?.*/, "", path)
        want = 200; wsize = -1
        if (path ~ /^\/static\/f[0-9]+\.txt$/) { n = path; gsub(/[^0-9]/, "", n); wsize = 1000 + n }
        else if (path == "/1k") wsize = 1024
        else if (path == "/100k") wsize = 102400
        else if (path ~ /^\/hostile\/loop\//) want = 503
        else if (path ~ /^\/hostile\/trap\//) want = 502
        else if (path ~ /^\/nope\//) want = 404
        total++; kind[want]++
        if (code != want || (wsize >= 0 && size != wsize)) {
            failed++
            print code, size, url, "(want " want (wsize >= 0 ? " with " wsize " bytes" : "") ")" >> fails
        }
    }
    END {
        printf "requests: %d (200: %d, 503 loop: %d, 502 trap: %d, 404: %d), failed: %d\n",
            total, kind[200], kind[503], kind[502], kind[404], failed + 0
        exit failed > 0
    }' >"$WORK/summary.txt" && TRAFFIC_OK=yes || TRAFFIC_OK=no

ADMIN_SUMMARY="$(awk '{ total++; if ($2 != $3) { failed++; bad[$1 " " $3]++ } ops[$1]++ }
    END {
        printf "admin calls: %d (uploads %d, publishes %d, rollbacks %d, invalidations %d), failed: %d",
            total, ops["upload"], ops["publish"], ops["rollback"], ops["invalidate"], failed + 0
        for (k in bad) printf " [%s x%d]", k, bad[k]
        print ""
    }' "$WORK/admin.log")"
ADMIN_FAILED="$(awk '$2 != $3' "$WORK/admin.log" | wc -l)"

echo "soak: $ELAPSED s, $SOAK_WORKERS workers, profile $SOAK_PROFILE"
cat "$WORK/summary.txt"
echo "$ADMIN_SUMMARY"
echo "node: alive at the end: $ALIVE; panics in its log: $PANICS"
echo "node RSS: start $((RSS_START / 1024)) MiB, end $((RSS_END / 1024)) MiB, peak $((RSS_PEAK / 1024)) MiB"
echo "RSS every 10 s (s KiB): $(tr '\n' ' ' <"$WORK/rss.log")"
if [[ -s "$WORK/failures.log" ]]; then
    echo "first failures:"
    head -20 "$WORK/failures.log"
fi
[[ "$TRAFFIC_OK" == yes && "$ADMIN_FAILED" == 0 && "$ALIVE" == yes && "$PANICS" == 0 ]]
