#!/usr/bin/env bash
# Runs every test from a fresh clone: installs the tools the tests need if missing (see
# scripts/install-tools.sh), runs the worklet tests under node, then `cargo test --workspace`
# (unit, simulator and end-to-end socket tests), the browser tests (Chromium, Firefox and
# WebKitGTK page tests, the `browsers` feature of browser-tests) and the DSP benches once each.
# Extra arguments go to both cargo test runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-tools.sh
# trunk reads NO_COLOR as its own true/false flag and fails on anything else.
unset NO_COLOR
# The worklet tests run the DSP wasm as the page gets it (the trunk hook's build, wasm-opt).
sh scripts/build-audio-wasm.sh target/audio.wasm
node --test client/worklet/test/
cargo test --workspace "$@"
cargo test -p browser-tests --features browsers "$@"
# The DSP benches, each once in criterion's test mode: they must run; their figures come from
# `cargo bench -p audio` and never gate anything.
cargo test -p audio --bench dsp
