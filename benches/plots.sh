#!/usr/bin/env bash
# The committed charts -> results/plots/*.png
#   bash benches/plots.sh          (about 10 seconds)
# Benchmark charts from the committed CSVs in results/ (latency vs load,
# scaling, peers, checkpoints, model quality), and data charts from a replay of generated data: 300 000
# trades of 12 symbols and 400 000 interactions (price, bars, correlation,
# item counts with alerts, activity, latency CDF). eddy draws them all.
source "$(dirname "$0")/common.sh"
$eddy generate trades --out "$work/trades.csv" --count 300000 --symbols 12 2>/dev/null
$eddy generate interactions --out "$work/interactions.csv" --count 400000 2>/dev/null
$eddy replay --trades "$work/trades.csv" --interactions "$work/interactions.csv" \
  --threshold 5000 --out "$work/run" --quiet 2>/dev/null
$eddy plot --in "$work/run" --out "$work/plots"
$eddy plot --in results --out "$work/plots"
mkdir -p results/plots
cp "$work"/plots/*.png results/plots/
ls results/plots
