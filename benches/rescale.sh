#!/usr/bin/env bash
# Rescaling figures -> results/rescale.csv
#   bash benches/rescale.sh [OLD_EDDY]
# 1. Checkpoint cost with state in key groups against the build before them
#    (OLD_EDDY: an eddy built from commit 63efa67, e.g.
#    `git worktree add /tmp/old 63efa67 && cargo build --release` there):
#    the full pipeline (100 symbols, 1 000 items, as fast as possible, 2
#    workers, a checkpoint every 1 s of event time), 3 repetitions
#    interleaved; mean checkpoint time and bytes per checkpoint.
# 2. Resuming a million keys: interactions of 1 000 000 users and items
#    replayed with checkpoints every 2 s, killed (SIGKILL) after the 5th,
#    resumed on another number of workers (1 -> 2, 2 -> 1); the time from the
#    resumed process's start to its "resuming from" line (reading and
#    dealing out the state), the state's bytes, and whether the finished run
#    equals an uninterrupted one.
# 3. A 2-process cluster killed after its 5th checkpoint, resumed as 3.
source "$(dirname "$0")/common.sh"
old=${1:-}
csv=results/rescale.csv
echo "measure,case,repetition,value,unit,machine" > "$csv"

sed -e 's/^items = 2000$/items = 1000/' dataflows/both.toml > "$work/both.toml"
if [ -n "$old" ]; then
  for rep in 1 2 3; do
    for which in before groups; do
      bin=$eddy; [ "$which" = before ] && bin=$old
      out="$work/ck-$which-$rep"
      $bin run "$work/both.toml" --workers 2 --quiet --out "$out" \
        --checkpoint-dir "$work/ckdir-$which-$rep" --checkpoint-interval-ms 1000 2>/dev/null
      python3 - "$which" "$rep" "$out/metrics.json" "$machine" >> "$csv" <<'PY'
import json, sys
which, rep, path, machine = sys.argv[1:]
c = json.load(open(path))["checkpoints"]
print(f"checkpoint_mean_ms,{which},{rep},{c['mean_ms']:.2f},ms,{machine}")
print(f"checkpoint_bytes,{which},{rep},{c['bytes_per_epoch']:.0f},bytes,{machine}")
PY
      rm -rf "$work/ckdir-$which-$rep" "$out"
    done
  done
fi

# Times a resumed run: seconds from its start to the line saying it resumed.
timed_resume() { # CASE OUT CK COMMAND...
  local case=$1 out=$2 ck=$3
  shift 3
  python3 - "$case" "$machine" "$@" >> "$csv" <<'PY'
import subprocess, sys, time
case, machine, *cmd = sys.argv[1:]
start = time.monotonic()
p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env={"RUST_LOG": "info", "PATH": "/usr/bin:/bin"})
resumed = None
for line in p.stderr:
    if resumed is None and "resuming from the checkpoint" in line:
        resumed = time.monotonic() - start
p.wait()
assert p.returncode == 0, f"{case}: exit {p.returncode}"
print(f"resume_s,{case},1,{resumed:.3f},s,{machine}")
PY
}

$eddy generate interactions -o "$work/i.csv" -n 3000000 --users 1000000 --items 1000000 \
  --rate 50000 --disorder-ms 150 2>/dev/null
replay=(replay --interactions "$work/i.csv" --quiet)
$eddy "${replay[@]}" --out "$work/keys-ref" --workers 2 2>/dev/null
same() {
  local s=yes
  for f in "$1"/*.csv; do cmp -s <(sort "$f") <(sort "$2/$(basename "$f")") || s=no; done
  echo $s
}
for move in "1 2" "2 1"; do
  set -- $move
  case="million-keys-${1}w-to-${2}w"
  out="$work/$case" ck="$work/$case-ck"
  EDDY_CRASH_AT=after-manifest@5 $eddy "${replay[@]}" --out "$out" --workers "$1" \
    --checkpoint-dir "$ck" --checkpoint-interval-ms 2000 2>/dev/null || true
  bytes=$($eddy checkpoint show "$ck" | awk '/^epoch/ { n++ } n == 1 && /state [0-9]+ bytes/ { sub(/.*state /, ""); s += $1 } END { print s }')
  echo "state_bytes,$case,1,$bytes,bytes,$machine" >> "$csv"
  timed_resume "$case" "$out" "$ck" "$eddy" "${replay[@]}" --out "$out" --workers "$2" \
    --checkpoint-dir "$ck" --checkpoint-interval-ms 2000 --resume
  echo "identical_to_uninterrupted,$case,1,$(same "$work/keys-ref" "$out"),,$machine" >> "$csv"
done

case="cluster-2-to-3-processes"
out="$work/$case" ck="$work/$case-ck"
EDDY_CRASH_AT=after-manifest@5/p0 $eddy cluster -n 2 -w 1 -- "${replay[@]}" --out "$out" \
  --checkpoint-dir "$ck" --checkpoint-interval-ms 2000 >/dev/null 2>&1 || true
start=$(date +%s.%N)
$eddy cluster -n 3 -w 1 -- "${replay[@]}" --out "$out" --checkpoint-dir "$ck" \
  --checkpoint-interval-ms 2000 --resume >/dev/null 2>&1
end=$(date +%s.%N)
echo "resumed_run_s,$case,1,$(echo "$end - $start" | bc),s,$machine" >> "$csv"
echo "identical_to_uninterrupted,$case,1,$(same "$work/keys-ref" "$out"),,$machine" >> "$csv"
cat "$csv"
