#!/usr/bin/env bash
# Runs each fuzz target of fuzz/ (cargo fuzz, libFuzzer, nightly) for SECONDS
# (default 60) from its kept corpus and writes results/fuzz.csv: target,
# seconds, executions, corpus size, crashes. A crash's input is left in
# fuzz/artifacts/TARGET/; make it a regression test before fixing it.
# Usage: bash benches/fuzz.sh [SECONDS [TARGET...]]  (targets named: their
# rows of results/fuzz.csv are replaced, the others kept)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
cd fuzz
cargo +nightly fuzz build -O
targets=${*:-$(cargo +nightly fuzz list)}
if [ $# -eq 0 ] || [ ! -f ../results/fuzz.csv ]; then
  echo "target,seconds,executions,corpus,crashes" > ../results/fuzz.csv
fi
for target in $targets; do
  sed -i "/^$target,/d" ../results/fuzz.csv
  mkdir -p "corpus/$target" "artifacts/$target"
  log=$(mktemp)
  cargo +nightly fuzz run -O "$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 >"$log" 2>&1 || true
  runs=$(grep -o 'Done [0-9]* runs' "$log" | grep -o '[0-9]*' | tail -1 || true)
  if [ -z "$runs" ]; then runs=$(grep -o '#[0-9]*' "$log" | tail -1 | tr -d '#'); fi
  corpus=$(find "corpus/$target" -type f | wc -l)
  crashes=$(find "artifacts/$target" -type f | wc -l)
  echo "$target,$seconds,$runs,$corpus,$crashes" >> ../results/fuzz.csv
  if [ "$crashes" -gt 0 ]; then tail -40 "$log"; fi
  rm -f "$log"
done
cat ../results/fuzz.csv
