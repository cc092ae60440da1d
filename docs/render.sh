#!/usr/bin/env bash
# Renders the Mermaid diagrams of docs/*.md to docs/diagrams/NAME.png, for
# viewers that do not render Mermaid. A diagram is a ```mermaid block right
# after a `<!-- diagram: NAME -->` line.
#   bash docs/render.sh
# Needs node/npm and Chromium (Debian's `chromium`, installed when missing);
# mermaid-cli is installed into target/mermaid-cli on first use, using that
# Chromium instead of downloading a browser of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null; then
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
cli=target/mermaid-cli
if [ ! -x "$cli/node_modules/.bin/mmdc" ]; then
  mkdir -p "$cli"
  (cd "$cli" && PUPPETEER_SKIP_DOWNLOAD=1 npm install --no-audit --no-fund --silent @mermaid-js/mermaid-cli@12)
fi
echo '{"executablePath": "'"$(command -v chromium)"'", "args": ["--no-sandbox"]}' > "$cli/puppeteer.json"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work" docs/*.md <<'PY'
import re, sys
work, files = sys.argv[1], sys.argv[2:]
for path in files:
    text = open(path).read()
    for name, body in re.findall(r"<!-- diagram: (\w+) -->\n```mermaid\n(.*?)```", text, re.S):
        open(f"{work}/{name}.mmd", "w").write(body)
PY
for source in "$work"/*.mmd; do
  name=$(basename "$source" .mmd)
  "$cli/node_modules/.bin/mmdc" -q -p "$cli/puppeteer.json" -i "$source" \
    -o "docs/diagrams/$name.png" -b white -s 2
  echo "docs/diagrams/$name.png"
done
