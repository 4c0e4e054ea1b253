#!/bin/sh
# Builds the browser client for deployment into dist/ (served by the proxy at /):
#   scripts/build-client.sh && cargo run --release -p proxy
# trunk takes wasm-opt from PATH; this puts the repo's npm binaryen@132 first
# (scripts/install-tools.sh installs it). Extra arguments go to `trunk build`.
set -eu
cd "$(dirname "$0")/.."
PATH="$PWD/node_modules/.bin:$PATH" exec trunk build --release=true "$@"
