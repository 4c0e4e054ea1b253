#!/bin/sh
# trunk pre_build hook (see Trunk.toml): builds client/audio as the zero-import audio.wasm the
# AudioWorklets run, and places it in trunk's staging dir so it lands in dist/ next to
# index.html. Always a release build: the DSP runs in the audio thread and must be fast even in
# a debug bundle (it takes seconds to build and has no dependencies).
set -eu

: "${TRUNK_STAGING_DIR:?run by trunk as a pre_build hook}"
source_dir="${TRUNK_SOURCE_DIR:-.}"
target_dir="${CARGO_TARGET_DIR:-$source_dir/target}"

cargo build --quiet --offline --release --target wasm32-unknown-unknown -p audio \
    --manifest-path "$source_dir/Cargo.toml"
cp "$target_dir/wasm32-unknown-unknown/release/audio.wasm" "$TRUNK_STAGING_DIR/audio.wasm"
