#!/usr/bin/env bash
# Regional-tier simulation: 3 edges and 2 parents (real `edge` processes, release build) on
# loopback in front of one counting origin; 30,000 requests over 2,000 objects of 1 KiB with
# Zipf(1.0) popularity, round-robin over the edges. Prints origin requests with and without the
# tier, hit ratios per tier, p50/p99, and a run where one parent is killed half-way.
# The load generator and origin are bench/tiers.py (python3, standard library only).
#
#   bench/tiers.sh                 build release and run
#   EDGE_BIN=path bench/tiers.sh   use this binary instead of building
#   REQUESTS=30000 OBJECTS=2000 WORKERS=8 bench/tiers.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${EDGE_BIN:-}" ]]; then
    cargo build --release --locked -p edge-runtime --bin edge
    EDGE_BIN=target/release/edge
fi

exec python3 bench/tiers.py --edge "$EDGE_BIN" \
    --requests "${REQUESTS:-30000}" --objects "${OBJECTS:-2000}" --workers "${WORKERS:-8}"
