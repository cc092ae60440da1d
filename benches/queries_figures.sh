#!/usr/bin/env bash
# The full query set's figures -> results/queries.csv
#   bash benches/queries_figures.sh            (about 2 minutes)
#   SOAK=1 bash benches/queries_figures.sh     (adds the 5-minute real-time run at 200 000 events/s)
# 1. the full pipeline (both streams, every query; dataflows/both.toml), as fast as possible, 1 and 2 workers;
# 2. the cost of C1: the market pipeline at 100 and 500 symbols with corr_60s on and off, 1 worker;
# 3. (SOAK=1) peak memory and latency of dataflows/realtime_200k.toml over 300 s.
# Figures come from each run's own metrics.json.
source "$(dirname "$0")/common.sh"
csv=results/queries.csv
echo "figure,workers,symbols,corr,records,wall_s,records_per_s,rows_out,latency_p50_ms,latency_p99_ms,peak_rss_mib,machine" > "$csv"

row() { # figure workers symbols corr metrics.json
  python3 - "$@" "$machine" >> "$csv" <<'PY'
import json, sys
fig, w, symbols, corr, path, machine = sys.argv[1:]
m = json.load(open(path))
print(f'{fig},{w},{symbols},{corr},{m["records"]["generated"]},{m["wall_time_s"]:.3f},'
      f'{m["throughput"]["records_per_s"]:.0f},{m["records"]["rows_out"]},{m["latency_ms"]["p50"]},'
      f'{m["latency_ms"]["p99"]},{m["peak_rss_bytes"]/2**20:.1f},{machine}')
PY
}

for rep in 1 2 3; do
  for w in 1 2; do
    $eddy run dataflows/both.toml --workers "$w" --quiet --out "$work/both-$w" 2>/dev/null
    row full_pipeline_as_fast "$w" 100 on "$work/both-$w/metrics.json"
  done
done

for symbols in 100 500; do
  for corr in true false; do
    sed -e "s/^symbols = 100$/symbols = $symbols/" -e "s/^count = 5000000$/count = 2000000/" \
        -e "/^\[queries.corr_60s\]/,/^\[/ s/^enabled = true$/enabled = $corr/" \
        dataflows/market.toml > "$work/market-$symbols-$corr.toml"
    $eddy run "$work/market-$symbols-$corr.toml" --workers 1 --quiet --out "$work/m-$symbols-$corr" 2>/dev/null
    row c1_cost_market_pipeline 1 "$symbols" "$corr" "$work/m-$symbols-$corr/metrics.json"
  done
done

if [ "${SOAK:-0}" = 1 ]; then
  $eddy run dataflows/realtime_200k.toml --quiet --out "$work/soak" 2>/dev/null
  row real_time_200k_per_s_300s 2 100 on "$work/soak/metrics.json"
fi
cat "$csv"
