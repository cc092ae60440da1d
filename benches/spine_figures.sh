#!/usr/bin/env bash
# The engine spine's headline figures -> results/spine.csv
#   bash benches/spine_figures.sh
# 1. M1+M2 on the market generator as fast as possible (5M trades, 100 symbols), 1 and 2 workers;
# 2. replay of a 2 000 000-trade file made by `eddy generate` (M1+M2), 1 and 2 workers;
# 3. real time at 100 000 trades/s for 20 s: window latency p50/p99 and generator lag.
# Each figure comes from the run's own metrics.json; wall time includes start-up.
source "$(dirname "$0")/common.sh"
csv=results/spine.csv
echo "figure,workers,records,wall_s,records_per_s,latency_p50_ms,latency_p99_ms,latency_max_ms,lag_p99_ms,peak_rss_mib,machine" > "$csv"

row() { # figure workers metrics.json
  python3 - "$1" "$2" "$3" "$machine" >> "$csv" <<'PY'
import json, sys
fig, w, path, machine = sys.argv[1:]
m = json.load(open(path))
lag = (m.get("generator_lag_ms") or {}).get("p99", "")
print(f'{fig},{w},{m["records"]["generated"]},{m["wall_time_s"]:.3f},{m["throughput"]["records_per_s"]:.0f},'
      f'{m["latency_ms"]["p50"]},{m["latency_ms"]["p99"]},{m["latency_ms"]["max"]},{lag},'
      f'{m["peak_rss_bytes"]/2**20:.1f},{machine}')
PY
}

m1m2 dataflows/market.toml > "$work/market.toml"
for rep in 1 2 3; do
  for w in 1 2; do
    $eddy run "$work/market.toml" --workers "$w" --quiet --out "$work/fast-$w" 2>/dev/null
    row as_fast_generator_m1_m2 "$w" "$work/fast-$w/metrics.json"
  done
done

$eddy generate trades --out "$work/trades-2m.csv" --count 2000000 --symbols 100 --rate 100000 --disorder-ms 100 2>/dev/null
printf '[sources.trades]\nkind = "csv"\npath = "trades-2m.csv"\n[queries.vol_60s]\nenabled = false\n[queries.corr_60s]\nenabled = false\n[queries.ewma]\nenabled = false\n[queries.anomalies]\nenabled = false\n[queries.forecasts]\nenabled = false\n' > "$work/replay.toml"
for rep in 1 2 3; do
  for w in 1 2; do
    $eddy run "$work/replay.toml" --workers "$w" --quiet --out "$work/replay-$w" 2>/dev/null
    row replay_2m_trades_m1_m2 "$w" "$work/replay-$w/metrics.json"
  done
done

for w in 1 2; do
  $eddy run "$work/market.toml" --timing real-time --duration 20 --workers "$w" --quiet --out "$work/rt-$w" 2>/dev/null
  row real_time_100k_per_s "$w" "$work/rt-$w/metrics.json"
done
cat "$csv"
