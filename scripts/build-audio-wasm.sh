#!/bin/sh
# Builds client/audio as the zero-import audio.wasm the AudioWorklets run.
#
#   trunk pre_build hook (see Trunk.toml): writes $TRUNK_STAGING_DIR/audio.wasm, so it lands in
#                                          dist/ next to index.html
#   scripts/build-audio-wasm.sh OUT.wasm   anywhere else (scripts/test.sh: target/audio.wasm,
#                                          which the worklet tests under node load)
#
# Always the `wasm-audio` profile (Cargo.toml: release, opt-level "z", panic abort, strip): the
# DSP runs in the audio thread and must be fast even in a debug bundle, and it builds in
# seconds (no dependencies). Then binaryen's wasm-opt -Oz (npm binaryen@132, installed into
# node_modules by scripts/install-tools.sh; Debian's wasm-opt 108 miscompiles, so it is never
# used): about 19 KB instead of 27. Without it the cargo output ships as it is, with a warning:
# it works the same, only larger.
set -eu

source_dir="${TRUNK_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}"
target_dir="${CARGO_TARGET_DIR:-$source_dir/target}"
if [ $# -ge 1 ]; then
    out="$1"
else
    : "${TRUNK_STAGING_DIR:?run by trunk as a pre_build hook, or give the output path}"
    out="$TRUNK_STAGING_DIR/audio.wasm"
fi

# The post-MVP features rustc's wasm32 target emits here (memory.copy/fill, saturating
# float-to-int, sign extension) and the stack pointer global; every engine the page supports
# has them. Nothing else may appear: wasm-opt fails validation if the module uses more.
WASM_FEATURES="--enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals"
BINARYEN_VERSION=132

cargo build --quiet --offline --profile wasm-audio --target wasm32-unknown-unknown -p audio \
    --manifest-path "$source_dir/Cargo.toml"
built="$target_dir/wasm32-unknown-unknown/wasm-audio/audio.wasm"

wasm_opt="$source_dir/node_modules/.bin/wasm-opt"
if "$wasm_opt" --version 2>/dev/null | grep -q "version_$BINARYEN_VERSION"; then
    # shellcheck disable=SC2086 # the features are separate flags
    "$wasm_opt" -Oz $WASM_FEATURES --strip-debug --strip-producers "$built" -o "$out"
    how="wasm-opt -Oz"
else
    echo "warning: no binaryen $BINARYEN_VERSION wasm-opt in node_modules (scripts/install-tools.sh" \
        "installs it); audio.wasm is not size-optimised" >&2
    cp "$built" "$out"
    how="not optimised"
fi

# The worklets instantiate the module with no imports at all: fail here, not in the audio thread.
checked=""
if command -v node >/dev/null; then
    node -e '
        const module = new WebAssembly.Module(require("fs").readFileSync(process.argv[1]));
        const imports = WebAssembly.Module.imports(module);
        if (imports.length) {
            console.error("audio.wasm must import nothing, imports:", imports);
            process.exit(1);
        }' "$out"
    checked=", no imports"
fi
echo "audio.wasm: $(wc -c <"$out" | tr -d ' ') bytes ($how$checked)" >&2
