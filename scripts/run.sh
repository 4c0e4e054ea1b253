#!/usr/bin/env bash
# Runs the whole app from a fresh clone: installs the build tools if missing, builds the
# browser client into dist/, and serves it with the proxy on http://127.0.0.1:8000/.
# Extra arguments go to the proxy (e.g. --listen-addr 0.0.0.0:8000 --access-token TOKEN).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-tools.sh
scripts/build-client.sh
exec cargo run --release -p proxy -- "$@"
