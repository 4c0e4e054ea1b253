#!/usr/bin/env bash
# Load test: the simulator at the seed's stage times (transcript 0.8 s after commit, LLM first
# token 0.4 s then 60 tokens/s, speech first byte 0.6 s), a proxy in front of it, and the load
# generator's sweep against the proxy, all on loopback. Prints one row per session count.
#
#   scripts/loadtest.sh [SESSIONS] [loadgen options…]
#
# SESSIONS is a comma-separated list (default 50,200,500,1000); options go to `loadgen` (see
# `target/profiling/loadgen --help`: --duration-s, --speech-s, --barge-in-every, --idle, …).
# Builds with the `profiling` profile (release without LTO); LOADTEST_PROFILE=release for the
# LTO build. The proxy reads its settings from the environment as usual (e.g. MAX_SESSIONS for
# an idle run of more sessions than its open-file limit allows by default). Everything it
# starts ends with it.
set -euo pipefail
cd "$(dirname "$0")/.."
sessions="${1:-50,200,500,1000}"
shift || true
profile="${LOADTEST_PROFILE:-profiling}"
cargo build --profile "$profile" -p openai-sim -p proxy -p loadgen
bin="target/$profile"
sim_port="${LOADTEST_SIM_PORT:-18401}"
proxy_port="${LOADTEST_PROXY_PORT:-18400}"
key="sk-loadtest-0123456789abcdef"

# Both servers may hold thousands of sockets.
ulimit -n "$(ulimit -Hn)"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT

"$bin/openai-sim" --port "$sim_port" --api-key "$key" \
  --stt-first-delta-ms 600 --stt-delta-interval-ms 40 \
  --llm-first-token-ms 400 --llm-tokens-per-second 60 \
  --tts-first-byte-ms 600 --realtime-first-audio-ms 1000 \
  --default-reply "Sure, here is a short answer. It has three sentences of about the usual length. That is all for now." \
  2>/dev/null &
sim_pid=$!
pids+=("$sim_pid")

# The load comes from one address: lift the per-address caps, which would rightly refuse it.
OPENAI_API_KEY="$key" OPENAI_BASE_URL="http://127.0.0.1:$sim_port/v1" \
LISTEN_ADDR="127.0.0.1:$proxy_port" CLIENT_DIR=/nonexistent RUST_LOG=warn \
MAX_SESSIONS_PER_ADDRESS=100000 SESSIONS_PER_ADDRESS_PER_MINUTE=1000000 \
MAX_CONNECTIONS_PER_ADDRESS=100000 \
  "$bin/proxy" &
proxy_pid=$!
pids+=("$proxy_pid")

for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$proxy_port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$proxy_port/healthz" >/dev/null

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); $(uname -srm)"
"$bin/loadgen" --url "ws://127.0.0.1:$proxy_port/ws" --sessions "$sessions" \
  --proxy-pid "$proxy_pid" --sim-pid "$sim_pid" "$@"
