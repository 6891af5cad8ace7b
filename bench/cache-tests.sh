#!/usr/bin/env bash
# HTTP caching conformance: runs the public suite http-tests/cache-tests (the npm package
# `http-cache-tests`, the suite behind cache-tests.fyi) against an edge node, the way the suite
# runs nginx, Varnish, httpd and the other reverse proxies: everything routed to the suite's own
# origin server, no default caching, every method allowed.
#
# Run from the repo root:   bash bench/cache-tests.sh
# Environment:
#   EDGE_BIN=/path/to/edge   test this binary instead of building `edge` in release mode (the
#                            build uses your RUSTFLAGS; with other flags than the target dir was
#                            built with, cargo rebuilds everything, wasmtime included)
#   TEST_ID=freshness-none   run one test and print its requests and responses (the suite's CLI
#                            debug output) instead of the summary
#   RESULTS=/path/out.json   also keep the suite's raw results (JSON) there
#   TIMEOUT=600              seconds the whole suite may take before it is stopped
#
# Prints the summary in cache-tests.fyi's terms, with the suite's own classification (its
# `determineTestResult`): required pass/fail (kind "required"), optional pass/fail (kind
# "optimal"); checks ("check": informational yes/no) and tests whose dependency failed are counted
# apart. Then the ids of every required and optional failure. Needs node >= 14.8 and npm.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Pinned: the results of other caches in README.md were taken with this version.
SUITE_VERSION=0.4.5
TEST_ID="${TEST_ID:-}"
TIMEOUT="${TIMEOUT:-600}"

log() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'cache-tests: error: %s\n' "$*" >&2
    for f in "${WORK:-/nonexistent}"/*.log; do
        [[ -s "$f" ]] && { printf '==> %s (last lines):\n' "$f" >&2; tail -n 20 "$f" >&2; }
    done
    exit 1
}

# ---------------------------------------------------------------------------------------------
# Cleanup: every background process started here is stopped on exit, whatever the reason.
# ---------------------------------------------------------------------------------------------
WORK="$(mktemp -d -t edge-cache-tests.XXXXXX)"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
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
trap 'exit 130' INT
trap 'exit 143' TERM HUP

for tool in node npm; do
    command -v "$tool" >/dev/null || die "$tool is required"
done

# ---------------------------------------------------------------------------------------------
# The node and the suite
# ---------------------------------------------------------------------------------------------
if [[ -z "${EDGE_BIN:-}" ]]; then
    log "building edge (release)"
    cargo build --release -p edge-runtime --bin edge
    EDGE_BIN="$(realpath "${CARGO_TARGET_DIR:-target}")/release/edge"
fi
[[ -x "$EDGE_BIN" ]] || die "$EDGE_BIN is not an executable"

log "installing http-cache-tests@$SUITE_VERSION from the npm registry into $WORK"
(cd "$WORK" && npm init -y >/dev/null &&
    timeout 300 npm install --no-audit --no-fund --loglevel=error "http-cache-tests@$SUITE_VERSION" >&2) \
    || die "npm install failed"
SUITE="$WORK/node_modules/http-cache-tests"
[[ -f "$SUITE/cli.mjs" ]] || die "the installed suite has no cli.mjs"

# The suite's server calls `listen(port)`, which binds every interface; this preload keeps it on
# loopback. Port 0 picks a free port, which the server prints ("Listening on http://...:PORT/").
cat >"$WORK/loopback.mjs" <<'EOF'
import net from 'node:net'
const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (port, ...rest) {
  if (typeof port === 'number' || typeof port === 'string') {
    return listen.call(this, Number(port), '127.0.0.1', ...rest)
  }
  return listen.call(this, port, ...rest)
}
EOF

# wait_line NAME PID FILE SED-EXPR: wait (bounded, ~10 s) until SED-EXPR prints something from
# FILE, failing early if the process died; sets LINE_RESULT.
wait_line() {
    local name="$1" pid="$2" file="$3" expr="$4" found=""
    for _ in $(seq 200); do
        found="$(sed -n "$expr" "$file" | head -n 1)"
        [[ -n "$found" ]] && break
        kill -0 "$pid" 2>/dev/null || die "$name exited during startup"
        sleep 0.05
    done
    [[ -n "$found" ]] || die "$name did not print its address within 10 s"
    LINE_RESULT="$found"
}

log "starting the suite's origin server"
(cd "$SUITE" && exec env npm_config_protocol=http npm_config_port=0 \
    npm_config_pidfile="$WORK/server.pid" \
    node --import "file://$WORK/loopback.mjs" server/server.mjs) >"$WORK/origin.log" 2>&1 &
PIDS+=("$!")
wait_line "the suite's origin" "${PIDS[-1]}" "$WORK/origin.log" \
    's|^Listening on http://127\.0\.0\.1:\([0-9]*\)/.*|\1|p'
ORIGIN_PORT="$LINE_RESULT"

# The node's configuration for the suite. README.md's benchmark section shows the same text
# between the same markers; a test (tests/e2e/conformance.rs) keeps the two identical.
# @ORIGIN@ is the suite's origin address, filled in below.
# BEGIN cache-tests config
CONFIG='[server]
listen = "127.0.0.1:0"

[origins.suite]
type = "http"
targets = ["http://@ORIGIN@"]

[[behaviors]]
path = "*"
origin = "suite"
methods = ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE", "M-SEARCH"]
cache = { default_ttl = "0s", targeted_cache_control = ["CDN-Cache-Control", "Surrogate-Control"] }
cache_key = { query = "all" }
'
# END cache-tests config
printf '%s' "${CONFIG//@ORIGIN@/127.0.0.1:$ORIGIN_PORT}" >"$WORK/edge.toml"

log "starting the node ($EDGE_BIN)"
RUST_LOG=info "$EDGE_BIN" serve --config "$WORK/edge.toml" >"$WORK/edge.log" 2>&1 &
PIDS+=("$!")
# The node logs `edge node listening addr=127.0.0.1:PORT` once it accepts connections.
wait_line "the node" "${PIDS[-1]}" "$WORK/edge.log" \
    's|.*edge node listening.*addr=127\.0\.0\.1:\([0-9]*\).*|\1|p'
EDGE_PORT="$LINE_RESULT"
BASE="http://127.0.0.1:$EDGE_PORT"

# ---------------------------------------------------------------------------------------------
# Run the suite's CLI (the same entry point as `npm run cli --base=...`).
# ---------------------------------------------------------------------------------------------
if [[ -n "$TEST_ID" ]]; then
    log "running $TEST_ID against $BASE"
    (cd "$SUITE" && timeout "$TIMEOUT" env npm_config_base="$BASE" npm_config_id="$TEST_ID" \
        node --no-warnings cli.mjs)
    exit 0
fi

log "running the suite against $BASE (up to $TIMEOUT s)"
(cd "$SUITE" && timeout "$TIMEOUT" env npm_config_base="$BASE" npm_package_config_id="" \
    node --no-warnings cli.mjs) >"$WORK/results.json" 2>"$WORK/cli.log" \
    || die "the suite's CLI failed or timed out"
[[ -n "${RESULTS:-}" ]] && cp "$WORK/results.json" "$RESULTS"

# The summary, classified by the suite's own code: display.mjs's determineTestResult, with
# dependencies honoured, as cache-tests.fyi shows results.
cat >"$SUITE/summary.mjs" <<'EOF'
import fs from 'node:fs'
import tests from './tests/index.mjs'
import surrogate from './tests/surrogate-control.mjs'
import { determineTestResult } from './lib/display.mjs'

tests.push(surrogate)
const results = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))
const count = {}
const failing = { required: [], optional: [] }
for (const suite of tests) {
  for (const test of suite.tests) {
    if (!(test.id in results)) continue
    const symbol = determineTestResult(tests, test.id, results, true)[2]
    count[symbol] = (count[symbol] || 0) + 1
    const why = results[test.id] === true ? '' : `  ${results[test.id].join(': ')}`
    if (symbol === '⛔️') failing.required.push(test.id + why)
    if (symbol === '⚠️') failing.optional.push(test.id + why)
  }
}
const kinds = (kind) => Object.keys(count).filter(s => s === kind).reduce((n, s) => n + count[s], 0)
let requiredPass = 0
let optionalPass = 0
for (const suite of tests) {
  for (const test of suite.tests) {
    if (!(test.id in results)) continue
    if (determineTestResult(tests, test.id, results, true)[2] !== '✅') continue
    if (test.kind === 'optimal') optionalPass++
    else requiredPass++
  }
}
console.log('| required pass | required fail | optional pass | optional fail |')
console.log('|---:|---:|---:|---:|')
console.log(`| ${requiredPass} | ${kinds('⛔️')} | ${optionalPass} | ${kinds('⚠️')} |`)
console.log('')
console.log(`checks: ${kinds('Y')} yes, ${kinds('N')} no; dependency failed: ${kinds('⚪️')};` +
  ` setup failed: ${kinds('🔹')}; harness failed: ${kinds('⁉️')}; retried: ${kinds('↻')}`)
console.log('')
console.log(`required failures (${failing.required.length}):`)
for (const line of failing.required) console.log(`  ${line}`)
console.log(`optional failures (${failing.optional.length}):`)
for (const line of failing.optional) console.log(`  ${line}`)
EOF
(cd "$SUITE" && node --no-warnings summary.mjs "$WORK/results.json")
