#!/usr/bin/env bash
# Benchmark: resident memory and file descriptors per idle and per speaking session, and the
# handshake rate, of a release build of the proxy (see e2e/examples/footprint.rs).
# Arguments: [IDLE_SESSIONS (default 2000)] [SPEAKING_SESSIONS (default 50)].
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p proxy --bin proxy
cargo run --release -p voice-agent-e2e --example footprint -- target/release/proxy "$@"
