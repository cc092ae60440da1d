#!/usr/bin/env bash
# eddy's M1+M2 against the hand-written lower bound, file to file -> results/limit.csv
#   bash benches/limit.sh [TRADES] [REPS]      (default 2 000 000 trades, 3 reps)
# One trades file from `eddy generate` (seed 3, 100 symbols). Both sides are
# whole commands on that file, timed by wall clock, alternating: the plain
# single-threaded loop (examples/plain_m1m2.rs: CSV in, hash maps, CSV out)
# and `eddy run` with only M1 and M2 on, one worker. ratio = plain / eddy
# (1.0 = as fast as the plain loop). The row counts of both must agree.
# The rows with method=generator are the figures of the former method
# (`cargo bench --bench limit`, both sides pulling from the same generator,
# in one process), kept for comparison.
source "$(dirname "$0")/common.sh"
trades=${1:-2000000}
reps=${2:-3}
csv=results/limit.csv
cargo build --release --quiet --example plain_m1m2
plain=./target/release/examples/plain_m1m2
replay_files "$trades" 0
old=$(grep -v '^method' "$csv" 2>/dev/null | grep '^generator' || true)
if [ -z "$old" ] && head -1 "$csv" 2>/dev/null | grep -q '^trades,limit_s'; then
  old=$(tail -n +2 "$csv" | awk -F, -v m="$machine" '{print "generator," $1 ",,"  $2 "," $4 "," $6 "," m}')
fi
seconds() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); python3 -c "print(f'{$e - $s:.3f}')"; }
rows() { cat "$1/bars_1s.csv" "$1/stats_10s.csv" | wc -l; }
echo "method,trades,rep,plain_s,eddy_s,ratio,machine" > "$csv"
[ -n "$old" ] && echo "$old" >> "$csv"
for rep in $(seq 1 "$reps"); do
  p=$(seconds "$plain" "$work/t.csv" "$work/plain")
  e=$(seconds "$eddy" run "$work/m1m2.toml" --workers 1 --quiet --out "$work/eddy")
  if [ "$(rows "$work/plain")" != "$(rows "$work/eddy")" ]; then
    echo "row counts differ: plain $(rows "$work/plain"), eddy $(rows "$work/eddy")" >&2; exit 1
  fi
  python3 -c "import sys; t,r,p,e,m=sys.argv[1:]; print(f'file,{t},{r},{p},{e},{float(p)/float(e):.3f},{m}')" \
    "$trades" "$rep" "$p" "$e" "$machine" >> "$csv"
done
cat "$csv"
