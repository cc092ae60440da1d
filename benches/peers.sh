#!/usr/bin/env bash
# eddy against other stream processors on the same file -> results/peers.csv
#   bash benches/peers.sh          (N=1000000 trades; about 10 minutes, most of it the peers)
# Installs Bytewax and Apache Flink (PyFlink) from PyPI into target/peers/venv
# (Flink runs on the machine's Java 17), generates one trades file, and runs
# M1 (bars_1s) + M2 (stats_10s) on it with each engine at parallelism 1 and 2:
#   eddy     `eddy run` on a CSV-replay pipeline with only M1+M2 (max_delay 200 ms)
#   bytewax  benches/peers/bytewax_m1m2.py: EventClock (200 ms wait), fold_window
#   flink    benches/peers/flink_m1m2.py: SQL TUMBLE/HOP window TVFs, streaming mode
# Every engine's rows are checked against eddy's (benches/peers/agree.py) and a
# run that disagrees is marked. wall_s is the whole command; fixed_s is the
# same command on a 1 000-row file (start-up: interpreter, JVM, job graph), and
# per_s = records / (wall_s - fixed_s) is the rate once running.
source "$(dirname "$0")/common.sh"
N=${N:-1000000}
venv=target/peers/venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import bytewax, pyflink" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet bytewax==0.21.1 apache-flink==2.3.0
fi
py=$venv/bin/python
bytewax_version=$($py -c "import importlib.metadata as m; print(m.version('bytewax'))")
flink_version=$($py -c "import importlib.metadata as m; print(m.version('apache-flink'))")

$eddy generate trades --out "$work/trades.csv" --count "$N" --seed 5 2>/dev/null
head -1001 "$work/trades.csv" > "$work/tiny.csv"
for f in trades tiny; do awk -F, 'NR > 1 { print NR - 2 "," $0 }' "$work/$f.csv" > "$work/${f}_seq.csv"; done

m1m2_replay() { # trades.csv out workers
  m1m2 > "$work/replay.toml" <<TOML
name = "peers"
[engine]
workers = $3
status = false
[sources.trades]
kind = "csv"
path = "$1"
[queries.vol_60s]
enabled = true
[queries.corr_60s]
enabled = true
[queries.ewma]
enabled = true
[output]
dir = "$2"
TOML
  $eddy run "$work/replay.toml" --quiet 2>/dev/null
}
run_eddy() { m1m2_replay "$work/$1.csv" "$2" "$3"; }
run_bytewax() {
  mkdir -p "$2"
  PEER_IN="$work/$1_seq.csv" PEER_OUT="$2" $py -m bytewax.run benches/peers/bytewax_m1m2.py:flow -w "$3" >/dev/null 2>&1
}
run_flink() {
  $py benches/peers/flink_m1m2.py "$work/$1_seq.csv" "$2/parts" "$3" >/dev/null 2>&1
  for name in bars_1s stats_10s; do cat "$2/parts/$name"/part-* > "$2/$name.csv"; done
}
seconds() { local t0 t1; t0=$(date +%s.%N); "$@"; t1=$(date +%s.%N); python3 -c "print($t1 - $t0)"; }

csv=results/peers.csv
echo "engine,version,parallelism,records,wall_s,fixed_s,per_s,agrees_with_eddy,machine" > "$csv"
run_eddy trades "$work/eddy" 1   # the reference rows
for engine in eddy bytewax flink; do
  case $engine in eddy) version=$(git describe --always --dirty);; bytewax) version=$bytewax_version;; flink) version=$flink_version;; esac
  for p in 1 2; do
    rm -rf "$work/run"
    fixed=$(seconds "run_$engine" tiny "$work/tiny_run" "$p"); rm -rf "$work/tiny_run"
    wall=$(seconds "run_$engine" trades "$work/run" "$p")
    agrees=$(python3 benches/peers/agree.py "$work/eddy" "$work/run" >&2 && echo yes || echo no)
    per_s=$(python3 -c "print($N / max($wall - $fixed, 1e-3))")
    printf '%s,%s,%s,%s,%.2f,%.2f,%.0f,%s,%s\n' "$engine" "$version" "$p" "$N" "$wall" "$fixed" "$per_s" "$agrees" "$machine" | tee -a "$csv"
  done
done
