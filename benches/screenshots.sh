#!/usr/bin/env bash
# Screenshots of the live dashboard during the default demo, as a new user
# would see it: starts `eddy` (the demo, dashboard on a free port), waits
# until a minute of wall time has filled the charts, and saves
# results/dashboard.png (the most traded symbol) and results/dashboard_sym007.png
# (a symbol chosen by the page's ?symbol=), then stops the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin eddy --example dashboard_screenshot
log=$(mktemp)
out=$(mktemp -d)
./target/release/eddy run --dashboard 127.0.0.1:0 --out "$out" 2>"$log" &
demo=$!
trap 'kill $demo 2>/dev/null || true; rm -rf "$out" "$log"' EXIT
address=""
for _ in $(seq 1 100); do
  address=$(grep -o 'dashboard: http://[^/]*' "$log" | head -1 | sed 's|dashboard: http://||' || true)
  [ -n "$address" ] && break
  sleep 0.1
done
[ -n "$address" ] || { echo "the demo printed no dashboard address" >&2; cat "$log" >&2; exit 1; }
sleep "${WAIT_S:-55}"
./target/release/examples/dashboard_screenshot "http://$address/" results/dashboard.png 4
./target/release/examples/dashboard_screenshot "http://$address/?symbol=SYM007" results/dashboard_sym007.png 4
