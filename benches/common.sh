# Shared by the figure scripts in benches/: strict mode, the project root, a
# release build, a scratch folder removed on exit, and helpers.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --quiet
eddy=./target/release/eddy
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
machine="$(nproc)-core $(uname -m)"

# A pipeline file with only M1 and M2 switched on (the file names every
# other query it runs).
m1m2() {
  awk '/^\[/ { off = ($0 ~ /^\[queries\.(vol_60s|corr_60s|ewma|anomalies|forecasts)\]/) }
       off && /^enabled = true$/ { $0 = "enabled = false" } { print }' "$@"
}

# Files from `eddy generate` (seed 3, 100 symbols): $work/t.csv with TRADES
# trades and, unless INTERACTIONS is 0, $work/i.csv; and pipeline files
# replaying them: $work/full.toml (both files, every query),
# $work/m1m2.toml (the trades, only M1 and M2 on) and
# $work/interactions.toml (the interactions, every interaction query).
#   replay_files TRADES INTERACTIONS
replay_files() {
  $eddy generate trades -n "$1" --seed 3 --symbols 100 --out "$work/t.csv" >/dev/null
  if [ "$2" -gt 0 ]; then
    $eddy generate interactions -n "$2" --seed 3 --out "$work/i.csv" >/dev/null
  fi
  printf '[sources.trades]\nkind = "csv"\npath = "%s"\n' "$work/t.csv" > "$work/m1m2.toml"
  cp "$work/m1m2.toml" "$work/full.toml"
  printf '[sources.interactions]\nkind = "csv"\npath = "%s"\n' "$work/i.csv" > "$work/interactions.toml"
  cat "$work/interactions.toml" >> "$work/full.toml"
  for q in vol_60s corr_60s ewma anomalies forecasts; do
    printf '[queries.%s]\nenabled = false\n' "$q" >> "$work/m1m2.toml"
  done
}
