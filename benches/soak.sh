#!/usr/bin/env bash
# The soak benchmark: the demo (generators at --speed 10, every query) and
# the same queries over TCP (`--listen`, fed by `eddy send` at 3000 lines/s)
# run for an hour with rolling results (16 MB or 60 s parts), retention (300 s),
# checkpoints every 5 s and the input log in 8 MiB segments; RSS, CPU,
# result, checkpoint and input-log bytes, window latency p99 and generator
# lag are sampled every 10 s into results/soak.csv and plotted
# (results/plots/soak.png).
#   Usage: bash benches/soak.sh [SECONDS] [extra benches/soak.py options]
# EDDY=path/to/eddy uses a built binary as it is; SOAK_CSV another CSV.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-3600}
shift || true
[ -n "${EDDY:-}" ] || cargo build --release -q
eddy=${EDDY:-$PWD/target/release/eddy}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
csv=${SOAK_CSV:-results/soak.csv}
python3 benches/soak.py --eddy "$eddy" --duration "$seconds" --work "$work/soak" --csv "$csv" "$@"
if [ -z "${SOAK_CSV:-}" ]; then
  "$eddy" plot --bench results --out results/plots >/dev/null
fi
