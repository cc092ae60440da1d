#!/usr/bin/env bash
# Latency under load -> results/latency_vs_load.csv
#   bash benches/load.sh            (about 4 minutes)
# Open-loop real-time runs of 10 s at increasing offered rates, up to and past
# saturation, 2 workers: M1+M2 on the market generator, and the full pipeline
# (both streams, every query; trades:interactions = 2:1). Each row: offered and
# achieved events/s, window latency p50/p99/p99.9/max, generator lag p99/max,
# CPU cores used, peak RSS; for the full pipeline also the per-record latency
# of ewma.csv rows (p50/p99). The full pipeline's rates are 25/50/75/100/150 %
# of its sustainable rate (600 k events/s). A rate is sustainable when the achieved rate matches
# the offered one and the generator's lag stays small (p99 below 100 ms).
# Each rate twice: records taken as each falls due (--release-ms 0) and with
# the default release (at most every 50 ms of wall time and at every window
# end; a source that fills a batch sooner is released every tick).
source "$(dirname "$0")/common.sh"
csv=results/latency_vs_load.csv
echo "pipeline,release_ms,offered_per_s,achieved_per_s,latency_p50_ms,latency_p99_ms,latency_p999_ms,latency_max_ms,record_p50_ms,record_p99_ms,lag_p99_ms,lag_max_ms,cpu_cores,peak_rss_mib,sustainable,machine" > "$csv"

run() { # name offered pipeline
  for release in 0 50; do
    $eddy run "$3" --timing real-time --duration 10 --workers 2 --release-ms "$release" --quiet --out "$work/out" 2>/dev/null
    python3 - "$1" "$release" "$2" "$work/out/metrics.json" "$machine" >> "$csv" <<'PY'
import json, sys
name, release, offered, path, machine = sys.argv[1:]
m = json.load(open(path))
lat, lag = m["latency_ms"], m.get("generator_lag_ms") or {"p99": 0, "max": 0}
rec = m.get("record_latency_ms") or {"p50": "", "p99": ""}
achieved = m["throughput"]["records_per_s"]
cores = (m["cpu_user_s"] + m["cpu_system_s"]) / m["wall_time_s"]
ok = achieved >= 0.97 * float(offered) and lag["p99"] < 100
print(f'{name},{release},{offered},{achieved:.0f},{lat["p50"]},{lat["p99"]},{lat["p999"]},{lat["max"]},{rec["p50"]},{rec["p99"]},{lag["p99"]},{lag["max"]},'
      f'{cores:.2f},{m["peak_rss_bytes"]/2**20:.1f},{"yes" if ok else "no"},{machine}')
PY
  done
}

for rate in 100000 1000000 4000000 8000000 12000000 16000000; do
  m1m2 dataflows/market.toml | sed -e "s/^rate = 100000.0$/rate = $rate.0/" -e "s/^count = .*$//" > "$work/m.toml"
  run m1m2 "$rate" "$work/m.toml"
done
for rate in 150000 300000 450000 600000 900000; do
  sed -e "s/^rate = 100000.0$/rate = $((rate * 2 / 3)).0/" -e "s/^rate = 50000.0$/rate = $((rate / 3)).0/" -e "s/^count = .*$//" \
      dataflows/both.toml > "$work/b.toml"
  run full_pipeline "$rate" "$work/b.toml"
done
cat "$csv"
python3 - "$csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
for name in sorted({r["pipeline"] for r in rows}):
    ok = [int(r["offered_per_s"]) for r in rows if r["pipeline"] == name and r["sustainable"] == "yes"]
    print(f"sustainable throughput, {name}: {max(ok) if ok else 0} events/s (highest offered rate kept up with)")
PY
