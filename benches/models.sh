#!/usr/bin/env bash
# Model quality and cost -> results/anomaly_quality.csv, results/forecast_quality.csv, results/model_cost.csv
#   bash benches/models.sh
# 1. Quality: both generators with their default labelled anomalies (20
#    symbols, 1 000 users, 500 items, 2 000 records/s each) for 20 minutes of
#    event time, with and without 150 ms of disorder, through the default
#    detectors and forecasters on 2 workers; `eddy evaluate` scores them
#    against the generators' truth.csv (the last minute left out: a counted
#    generator's keys run out one by one there).
# 2. Cost: the full pipeline (dataflows/both.toml: 100 symbols, 2 000 items,
#    every query) as fast as possible on 2 workers, with the models on (the
#    default) and off, 3 repetitions interleaved.
source "$(dirname "$0")/common.sh"

seconds=1200
start=1700000000000
until=$((start + (seconds - 60) * 1000))
quality_pipeline() { # disorder_ms
  cat <<TOML
name = "quality-disorder-$1"
[engine]
workers = 2
status = false
max_delay_ms = 200
[sources.trades]
kind = "market"
symbols = 20
rate = 2000.0
count = $((2000 * seconds))
seed = 11
disorder_ms = $1
[sources.trades.anomalies]
[sources.interactions]
kind = "generator"
users = 1000
items = 500
rate = 2000.0
count = $((2000 * seconds))
seed = 12
disorder_ms = $1
[sources.interactions.anomalies]
TOML
}

anomalies=results/anomaly_quality.csv
forecasts=results/forecast_quality.csv
rm -f "$anomalies" "$forecasts"
for disorder in 0 150; do
  quality_pipeline "$disorder" > "$work/q$disorder.toml"
  out="$work/q$disorder"
  $eddy run "$work/q$disorder.toml" --quiet --out "$out" 2>/dev/null
  $eddy evaluate --truth "$out/truth.csv" --in "$out" --until-ms "$until" --out "$out" > /dev/null 2>&1
  for f in anomaly_quality forecast_quality; do
    target=results/$f.csv
    [ -f "$target" ] || echo "disorder_ms,$(head -1 "$out/$f.csv"),machine" > "$target"
    tail -n +2 "$out/$f.csv" | sed -e "s/^/$disorder,/" -e "s/\$/,$machine/" >> "$target"
  done
done

sed -e '/^\[output\]/i [queries.anomalies]\nenabled = false\n\n[queries.forecasts]\nenabled = false\n' \
  dataflows/both.toml > "$work/both-off.toml"
cost=results/model_cost.csv
echo "run,repetition,models,records,wall_s,records_per_s,cpu_s,machine" > "$cost"
for rep in 1 2 3; do
  for models in on off; do
    pipeline=dataflows/both.toml
    [ "$models" = off ] && pipeline="$work/both-off.toml"
    out="$work/cost-$models-$rep"
    $eddy run "$pipeline" --workers 2 --quiet --out "$out" 2>/dev/null
    python3 - "$rep" "$models" "$out/metrics.json" "$machine" >> "$cost" <<'PY'
import json, sys
rep, models, path, machine = sys.argv[1:]
m = json.load(open(path))
print(f'full-100sym-2000items,{rep},{models},{m["records"]["generated"]},{m["wall_time_s"]:.3f},'
      f'{m["throughput"]["records_per_s"]:.0f},{m["cpu_user_s"] + m["cpu_system_s"]:.2f},{machine}')
PY
  done
done
cat "$anomalies" "$forecasts" "$cost"
