#!/usr/bin/env bash
# Installs what building the browser client and running the browser tests need, skipping
# whatever is already there (idempotent; CI runs it before the checks).
#
#   rust target wasm32-unknown-unknown    the client and the DSP wasm
#   trunk 0.21.14                         bundles the client (Trunk.toml)
#   wasm-bindgen-cli = Cargo.lock's wasm-bindgen version (trunk refuses any other)
#   wasm-opt 132 (npm binaryen@132)       release bundles; never Debian's binaryen 108
#   chromium, chromium-driver             the browser tests (tests/browser/)
#   firefox-esr, geckodriver 0.37.1       the browser tests in Firefox (geckodriver built with cargo install)
#   webkit2gtk-driver, xvfb, xauth        the browser tests in WebKitGTK (MiniBrowser on Xvfb)
#   pulseaudio, pulseaudio-utils          Firefox's audio output; the WAV microphone of both
#   espeak-ng, sox                        the tests' spoken microphone input
#   nginx                                 e2e/tests/nginx.rs runs deploy/nginx/voice-agent.conf
#   node                                  the worklet tests (node --test client/worklet/test/)
#   prometheus (its promtool)             checks the proxy's /metrics exposition (e2e/tests/metrics.rs)
#   redis-server                          the shared session store of the scale-out test (e2e/tests/scale_out.rs)
#
# It also fetches every crate (for all targets), since trunk runs cargo --offline.
set -euo pipefail
cd "$(dirname "$0")/.."

TRUNK_VERSION=0.21.14
BINARYEN_VERSION=132
GECKODRIVER_VERSION=0.37.1

log() { printf '==> %s\n' "$*"; }

# --- Debian packages -------------------------------------------------------------------------
apt_packages=()
command -v chromium >/dev/null || apt_packages+=(chromium)
command -v chromedriver >/dev/null || apt_packages+=(chromium-driver)
command -v firefox-esr >/dev/null || apt_packages+=(firefox-esr)
command -v WebKitWebDriver >/dev/null || apt_packages+=(webkit2gtk-driver)
command -v Xvfb >/dev/null || apt_packages+=(xvfb)
command -v xauth >/dev/null || apt_packages+=(xauth)
command -v pulseaudio >/dev/null || apt_packages+=(pulseaudio)
command -v paplay >/dev/null || apt_packages+=(pulseaudio-utils)
command -v espeak-ng >/dev/null || apt_packages+=(espeak-ng)
command -v sox >/dev/null || apt_packages+=(sox)
command -v nginx >/dev/null || apt_packages+=(nginx)
command -v node >/dev/null || apt_packages+=(nodejs)
command -v npm >/dev/null || apt_packages+=(npm)
command -v promtool >/dev/null || apt_packages+=(prometheus)
command -v redis-server >/dev/null || apt_packages+=(redis-server)
if ((${#apt_packages[@]})); then
    log "apt-get install ${apt_packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${apt_packages[@]}"
fi

# --- Rust ------------------------------------------------------------------------------------
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    log "rustup target add wasm32-unknown-unknown"
    rustup target add wasm32-unknown-unknown
fi

log "cargo fetch"
cargo fetch --locked --quiet

if [[ "$(trunk --version 2>/dev/null)" != "trunk $TRUNK_VERSION" ]]; then
    log "cargo install trunk@$TRUNK_VERSION"
    cargo install --locked --quiet "trunk@$TRUNK_VERSION"
fi

# No Debian package has geckodriver; cargo install builds it (1-2 minutes).
if [[ "$(geckodriver --version 2>/dev/null | sed -n 1p)" != "geckodriver $GECKODRIVER_VERSION"* ]]; then
    log "cargo install geckodriver@$GECKODRIVER_VERSION"
    cargo install --locked --quiet "geckodriver@$GECKODRIVER_VERSION"
fi

# The CLI must match the wasm-bindgen crate exactly. Installed without --locked: its own lock
# file names a crate version the registry here does not have.
wasm_bindgen_version="$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')"
if [[ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $wasm_bindgen_version" ]]; then
    log "cargo install wasm-bindgen-cli@$wasm_bindgen_version"
    cargo install --quiet wasm-bindgen-cli --version "$wasm_bindgen_version"
fi
if ! grep -q "^wasm_bindgen = \"$wasm_bindgen_version\"" Trunk.toml; then
    echo "Trunk.toml [tools] wasm_bindgen must be $wasm_bindgen_version (the Cargo.lock version)" >&2
    exit 1
fi

# --- wasm-opt from npm, local to the repo (node_modules/.bin; put it on PATH for release) -----
if [[ "$(node_modules/.bin/wasm-opt --version 2>/dev/null)" != *"version_$BINARYEN_VERSION"* ]]; then
    log "npm install binaryen@$BINARYEN_VERSION"
    npm install --no-save --no-audit --no-fund --loglevel=error "binaryen@$BINARYEN_VERSION"
fi

# --- OpenAI's Python SDK, pinned: openai-sim/tests/python_sdk.rs checks the simulator with it ---
if ! python3 -c 'import openai, websockets' 2>/dev/null; then
    log "pip install openai[realtime]==3.57.0"
    python3 -m pip install --quiet 'openai[realtime]==3.57.0'
fi

log "tools ready: $(trunk --version), $(wasm-bindgen --version), $(node_modules/.bin/wasm-opt --version), $(chromium --version)"
log "browsers ready: $(firefox-esr --version 2>/dev/null), $(geckodriver --version | sed -n 1p), webkit2gtk-driver $(dpkg-query -W -f='${Version}' webkit2gtk-driver)"
