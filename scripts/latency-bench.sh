#!/usr/bin/env bash
# Latency benchmark, side by side in one run: end of speech → first audio for a short question
# (~1 s of speech) and a long one (~9 s, spoken in phrases with short pauses), through the
# proxy with each early-turn technique on its own, and in the seed's sequential design
# (whole transcript, whole answer, one Speech request), all against one simulator at the
# seed's stage times: transcription 600 ms + 195 ms per second of the audio committed (0.8 s
# after a short utterance, 2.3 s after an 8.7 s one, as the seed logged; its deltas 10 ms
# apart), LLM first token
# 0.4 s then 60 tokens/s, speech first byte 0.6 s, and HANDSHAKE_MS (default 150) to set up each
# new connection, as TCP and TLS to a distant service cost.
#
#   scripts/latency-bench.sh            # SESSIONS=4 DURATION_S=60 HANDSHAKE_MS=150 by default
#
# Each row is one loadgen run (SESSIONS browsers, turns with 1 s of thought between them).
# Builds with the `profiling` profile. Everything it starts ends with it.
set -euo pipefail
cd "$(dirname "$0")/.."
sessions="${SESSIONS:-4}"
duration_s="${DURATION_S:-60}"
handshake_ms="${HANDSHAKE_MS:-150}"
profile="${LOADTEST_PROFILE:-profiling}"
cargo build --profile "$profile" -p openai-sim -p proxy -p loadgen
bin="target/$profile"
sim_port="${LOADTEST_SIM_PORT:-18411}"
proxy_port="${LOADTEST_PROXY_PORT:-18410}"
key="sk-loadtest-0123456789abcdef"

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT

# A simulator at the seed's stage times on port $1, transcribing in $2 ms + $3 ms per second
# of audio.
start_sim() {
  "$bin/openai-sim" --port "$1" --api-key "$key" \
    --stt-first-delta-ms "$2" --stt-ms-per-audio-s "$3" --stt-delta-interval-ms 10 \
    --llm-first-token-ms 400 --llm-tokens-per-second 60 --tts-first-byte-ms 600 \
    --handshake-ms "$handshake_ms" \
    --default-reply "Sure, here is a short answer. It has three sentences of about the usual length. That is all for now." \
    >/dev/null 2>&1 &
  pids+=("$!")
}

start_sim "$sim_port" 600 195
# The same with transcription as fast as today's streaming recognizers (150 ms + 50 ms per
# audio second): then a short pause's words are in before the hangover ends, and the
# speculative start has something to win.
fast_sim_port=$((sim_port + 2))
start_sim "$fast_sim_port" 150 50

questions=(
  "short|--speech-s 1.0"
  "long|--speech-s 9.0 --phrase-s 2.1 --phrase-gap-ms 300"
)
# label|the proxy's settings for it (each technique off on its own, then all of them)
variants=(
  "streamed, all on|"
  "streamed, no speculative start|SPECULATIVE_START=false"
  "streamed, no pieces (commit at the end)|COMMIT_AT_PAUSES=false"
  "streamed, no warm connections|WARM_CONNECTIONS=false"
  "streamed, first clause of 20 chars|FIRST_CLAUSE_MIN_CHARS=20"
  "streamed, none of the four|COMMIT_AT_PAUSES=false WARM_CONNECTIONS=false FIRST_CLAUSE_MIN_CHARS=20"
)

# One loadgen run; prints its row (and the column names before the first row).
header_printed=
run_loadgen() {
  local label="$1"
  shift
  local out
  out="$("$bin/loadgen" --sessions "$sessions" --duration-s "$duration_s" --ramp-s 2 "$@")"
  if [[ -z "$header_printed" ]]; then
    echo "question | design | $(head -n 1 <<<"$out")"
    header_printed=1
  fi
  # The row (the second line; the per-hop line follows it).
  echo "$label | $(sed -n 2p <<<"$out")"
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); $(uname -srm)"
echo "handshake: ${handshake_ms} ms per new upstream connection; ${sessions} sessions × ${duration_s} s per row"
# Starts a proxy on the simulator at port $1 with the settings in the rest; sets proxy_pid.
start_proxy() {
  local port="$1"
  shift
  env OPENAI_API_KEY="$key" OPENAI_BASE_URL="http://127.0.0.1:$port/v1" \
    LISTEN_ADDR="127.0.0.1:$proxy_port" CLIENT_DIR=/nonexistent RUST_LOG=warn \
    "$@" "$bin/proxy" &
  proxy_pid=$!
  for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$proxy_port/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
}

stop_proxy() {
  kill "$proxy_pid"
  wait "$proxy_pid" 2>/dev/null || true
}

for question in "${questions[@]}"; do
  name="${question%%|*}"
  # shellcheck disable=SC2206
  speech=(${question#*|})
  OPENAI_API_KEY="$key" run_loadgen "$name | sequential (seed)" "${speech[@]}" \
    --sequential-upstream "http://127.0.0.1:$sim_port/v1"
  for variant in "${variants[@]}"; do
    label="${variant%%|*}"
    # shellcheck disable=SC2206
    settings=(${variant#*|})
    start_proxy "$sim_port" "${settings[@]}"
    run_loadgen "$name | $label" "${speech[@]}" --url "ws://127.0.0.1:$proxy_port/ws" \
      --proxy-pid "$proxy_pid"
    stop_proxy
  done
done

name="short, fast transcription"
OPENAI_API_KEY="$key" run_loadgen "$name | sequential (seed)" --speech-s 1.0 \
  --sequential-upstream "http://127.0.0.1:$fast_sim_port/v1"
for variant in "streamed, all on|" "streamed, no speculative start|SPECULATIVE_START=false"; do
  # shellcheck disable=SC2206
  settings=(${variant#*|})
  start_proxy "$fast_sim_port" "${settings[@]}"
  run_loadgen "$name | ${variant%%|*}" --speech-s 1.0 --url "ws://127.0.0.1:$proxy_port/ws" \
    --proxy-pid "$proxy_pid"
  stop_proxy
done

# A cold turn: the first turn of a fresh proxy, whose connections to the LLM and speech hosts
# are not open yet (as after a quiet spell longer than the servers' keep-alive). Five each.
echo
echo "cold first turn (fresh proxy, one session, one short turn): end of speech → first audio, ms"
for warm in true false; do
  values=()
  for _ in 1 2 3 4 5; do
    start_proxy "$sim_port" WARM_CONNECTIONS="$warm"
    row="$("$bin/loadgen" --sessions 1 --duration-s 0.5 --ramp-s 0 --speech-s 1.0 \
      --url "ws://127.0.0.1:$proxy_port/ws" --json | tail -n 1)"
    values+=("$(python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["first_audio_p50_ms"]))' "$row")")
    stop_proxy
  done
  echo "WARM_CONNECTIONS=$warm: ${values[*]}"
done
