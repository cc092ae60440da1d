#!/usr/bin/env bash
# Fault-tolerance figures -> results/checkpoints.csv, results/recovery.csv, results/kill_matrix.csv
#   bash benches/faults.sh
# 1. Cost of checkpoints: the full pipeline (both streams, every query) at 100
#    symbols / 1 000 items, as fast as possible on 2 workers, without
#    checkpoints and with one every 1 s and 5 s of event time (3 repetitions,
#    interleaved). Event time runs far faster than the wall clock here, so the
#    CSV also gives checkpoints per wall second and the cost of one checkpoint.
# 2. Recovery: `eddy cluster --restart-on-failure` (1 and 2 processes) with a
#    process killed after its 10th checkpoint; the time from noticing the death
#    to the restarted processes' first new complete checkpoint.
# 3. Kill matrix: a replay of generated data (100 symbols, 1 000 items, with
#    disorder) killed with SIGKILL at injected points (mid-write, before and
#    after the manifest; several checkpoint numbers; 1 and 2 workers) and at
#    timed moments between checkpoints, resumed, and compared byte for byte
#    (sorted) with an uninterrupted run without checkpoints.
source "$(dirname "$0")/common.sh"

sed -e 's/^items = 2000$/items = 1000/' dataflows/both.toml > "$work/both.toml"

csv=results/checkpoints.csv
echo "run,repetition,interval_ms,records,wall_s,records_per_s,checkpoints,checkpoints_per_wall_s,mean_ms,max_ms,bytes_per_checkpoint,machine" > "$csv"
for rep in 1 2 3; do
  for interval in none 1000 5000; do
    out="$work/ck-$interval-$rep"
    flags=()
    if [ "$interval" != none ]; then
      flags=(--checkpoint-dir "$work/ckdir-$interval-$rep" --checkpoint-interval-ms "$interval")
    fi
    $eddy run "$work/both.toml" --workers 2 --quiet --out "$out" "${flags[@]}" 2>/dev/null
    python3 - "$interval" "$rep" "$out/metrics.json" "$machine" >> "$csv" <<'PY'
import json, sys
interval, rep, path, machine = sys.argv[1:]
m = json.load(open(path))
c = m.get("checkpoints") or {"epochs": 0, "mean_ms": 0, "max_ms": 0, "bytes_per_epoch": 0}
wall = m["wall_time_s"]
print(f'full-100sym-1000items,{rep},{interval},{m["records"]["generated"]},{wall:.3f},'
      f'{m["throughput"]["records_per_s"]:.0f},{c["epochs"]},{c["epochs"] / wall:.2f},'
      f'{c["mean_ms"]:.2f},{c["max_ms"]:.2f},{c["bytes_per_epoch"]:.0f},{machine}')
PY
    rm -rf "$work/ckdir-$interval-$rep"
  done
done
cat "$csv"

csv=results/recovery.csv
echo "processes,workers_per_process,killed,recovery_s,resumed_epoch,identical_to_uninterrupted,machine" > "$csv"
for p in 1 2; do
  ref="$work/rec-ref-$p"
  $eddy cluster -n "$p" -w 1 -- run "$work/both.toml" --quiet --out "$ref" >/dev/null 2>&1
  out="$work/rec-$p"
  EDDY_CRASH_AT="after-manifest@10/p$((p - 1))" $eddy cluster -n "$p" -w 1 --restart-on-failure -- \
    run "$work/both.toml" --quiet --out "$out" --checkpoint-dir "$work/rec-ck-$p" --checkpoint-interval-ms 1000 >/dev/null 2>&1
  same=yes
  for f in "$ref"/*.csv; do
    cmp -s <(sort "$f") <(sort "$out/$(basename "$f")") || same=no
  done
  python3 - "$p" "$out/metrics.json" "$same" "$machine" >> "$csv" <<'PY'
import json, sys
p, path, same, machine = sys.argv[1:]
for r in json.load(open(path))["recoveries"]:
    print(f'{p},1,process {r["failed_process"]} after its 10th checkpoint,{r["recovery_s"]:.3f},{r["resumed_epoch"]},{same},{machine}')
PY
done
cat "$csv"

# The kill matrix, on a replay.
$eddy generate trades -o "$work/t.csv" -n 300000 --symbols 100 --rate 20000 --disorder-ms 150 2>/dev/null
$eddy generate interactions -o "$work/i.csv" -n 200000 --items 1000 --users 5000 --rate 10000 --disorder-ms 150 2>/dev/null
replay=(replay --trades "$work/t.csv" --interactions "$work/i.csv" --quiet)
$eddy "${replay[@]}" --out "$work/km-ref" --workers 2 2>/dev/null
csv=results/kill_matrix.csv
echo "kill,workers,killed,resumed_from_checkpoint,identical_to_uninterrupted,machine" > "$csv"
compare() {
  local same=yes
  for f in "$work/km-ref"/*.csv; do
    cmp -s <(sort "$f") <(sort "$1/$(basename "$f")") || same=no
  done
  echo $same
}
for w in 1 2; do
  for stage in mid-write before-manifest after-manifest; do
    for n in 2 5 11 23; do
      out="$work/km-$stage-$n-$w"; ck="$work/km-ck-$stage-$n-$w"
      if EDDY_CRASH_AT="$stage@$n" $eddy "${replay[@]}" --out "$out" --workers "$w" \
        --checkpoint-dir "$ck" --checkpoint-interval-ms 500 >/dev/null 2>&1; then
        killed=no
      else
        rc=$?
        killed=$([ $rc = 137 ] && echo yes || echo "no (exit $rc)")
      fi
      log=$(EDDY_ATTEMPT=2 $eddy "${replay[@]}" --out "$out" --workers "$w" \
        --checkpoint-dir "$ck" --checkpoint-interval-ms 500 --resume 2>&1 >/dev/null)
      resumed=$(grep -q "resuming from the checkpoint" <<<"$log" && echo yes || echo no)
      echo "$stage@$n,$w,$killed,$resumed,$(compare "$out"),$machine" >> "$csv"
      rm -rf "$out" "$ck"
    done
  done
  # Timed kills: after the checkpoint of a given event-time second, then a few ms more.
  for at in 2 6 11 14; do
    out="$work/km-t$at-$w"; ck="$work/km-ck-t$at-$w"
    $eddy "${replay[@]}" --out "$out" --workers "$w" --checkpoint-dir "$ck" --checkpoint-interval-ms 500 2>/dev/null &
    pid=$!
    until python3 - "$ck/manifest-p0" "$at" 2>/dev/null <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read()
# Framed file: magic(8) version(4) length(8) payload; the manifest payload starts with the epoch (u64 LE).
epoch = struct.unpack("<Q", b[20:28])[0]
sys.exit(0 if epoch >= 1_700_000_000_000 + int(sys.argv[2]) * 1000 else 1)
PY
    do
      kill -0 $pid 2>/dev/null || break
      sleep 0.001
    done
    sleep 0.00$((at % 7))
    kill -9 $pid 2>/dev/null && killed=yes || killed=no
    wait $pid 2>/dev/null || true
    log=$($eddy "${replay[@]}" --out "$out" --workers "$w" --checkpoint-dir "$ck" --checkpoint-interval-ms 500 --resume 2>&1 >/dev/null)
    resumed=$(grep -q "resuming from the checkpoint" <<<"$log" && echo yes || echo no)
    echo "timed after epoch +${at}s,$w,$killed,$resumed,$(compare "$out"),$machine" >> "$csv"
    rm -rf "$out" "$ck"
  done
done
cat "$csv"
awk -F, 'NR > 1 { n++; if ($3 == "yes") k++; if ($5 != "yes") d++ } END { printf "kill points: %d, killed: %d, discrepancies: %d\n", n, k, d + 0 }' "$csv"
