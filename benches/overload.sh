#!/usr/bin/env bash
# Memory under overload: the demo pipeline (every query, 2 workers) at
# --speed 10 for a minute, then offered SPEED × 7000 events/s (default 1300:
# 9.1 M/s, about five times what it processes here) for SECONDS (300); RSS,
# records processed a second and the generator's lag every 10 s into
# results/overload.csv.   Usage: bash benches/overload.sh [SPEED] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${EDDY:-}" ] || cargo build --release -q
eddy=${EDDY:-$PWD/target/release/eddy}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 benches/overload.py --eddy "$eddy" --speed "${1:-1300}" --duration "${2:-300}" \
  --work "$work" --csv "${OVERLOAD_CSV:-results/overload.csv}"
