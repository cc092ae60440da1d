# Shared by the figure scripts in benches/: strict mode, the project root, a
# release build, a scratch folder removed on exit, and helpers.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --quiet
eddy=./target/release/eddy
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
machine="$(nproc)-core $(uname -m)"

# A pipeline file with only M1 and M2 switched on.
m1m2() { sed -e '/^\[queries.\(vol_60s\|corr_60s\|ewma\)\]/,/^\[/ s/^enabled = true$/enabled = false/' "$@"; }
