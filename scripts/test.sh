#!/usr/bin/env bash
# Runs every test from a fresh clone: installs the tools the browser tests need if missing
# (trunk, wasm-bindgen-cli, wasm-opt, Chromium, chromedriver, espeak-ng, sox), runs the
# worklet tests under node, then `cargo test --workspace` (unit, simulator, end-to-end socket
# and headless-Chromium tests). Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-tools.sh
# trunk reads NO_COLOR as its own true/false flag and fails on anything else.
unset NO_COLOR
cargo build -p audio --release --target wasm32-unknown-unknown
node --test client/worklet/test/
cargo test --workspace "$@"
