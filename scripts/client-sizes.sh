#!/usr/bin/env bash
# Prints what a browser downloads of the built client, raw and gzipped (gzip -9, as a server
# that compresses would send it), as a markdown table. A figure, not a check: it gates nothing.
#
#   scripts/client-sizes.sh            reads dist/ (build a release one first: scripts/build-client.sh)
#   scripts/client-sizes.sh DIR        reads another bundle, e.g. target/e2e-client/dist (the
#                                      browser tests' release build)
#   scripts/client-sizes.sh --build    builds a release dist/ with scripts/build-client.sh, then reads it
set -euo pipefail
cd "$(dirname "$0")/.."

dist=dist
case "${1:-}" in
    --build) bash scripts/build-client.sh >&2 ;;
    "") ;;
    *) dist="$1" ;;
esac

one() { # FILE: the first file matching the glob, or nothing
    compgen -G "$1" | head -n 1 || true
}
main_wasm="$(one "$dist/client-*_bg.wasm")"
main_js="$(one "$dist/client-*.js")"
[[ -n "$main_wasm" && -n "$main_js" ]] || {
    echo "no trunk bundle in $dist (scripts/build-client.sh builds one)" >&2
    exit 1
}

raw() { wc -c <"$1" | tr -d ' '; }
gz() { gzip -9 -c "$1" | wc -c | tr -d ' '; }
kib() { awk -v b="$1" 'BEGIN { printf "%.1f KiB", b / 1024 }'; }

printf '| file | what | raw | gzip -9 |\n|---|---|---:|---:|\n'
row() { # FILE WHAT
    printf '| `%s` | %s | %s (%s) | %s (%s) |\n' "$(basename "$1")" "$2" \
        "$(raw "$1")" "$(kib "$(raw "$1")")" "$(gz "$1")" "$(kib "$(gz "$1")")"
}
row "$main_wasm" "main bundle: the Leptos app"
row "$main_js" "main bundle: wasm-bindgen glue"
for file in "$dist"/index.html "$dist"/style-*.css "$dist"/worklets.js "$dist"/audio.wasm; do
    [[ -f "$file" ]] || continue
    case "$(basename "$file")" in
        index.html) what="page" ;;
        style-*) what="styles" ;;
        worklets.js) what="the two AudioWorklet processors" ;;
        audio.wasm) what="their DSP (zero imports)" ;;
    esac
    row "$file" "$what"
done
bundle_raw=$(($(raw "$main_wasm") + $(raw "$main_js")))
bundle_gz=$(($(gz "$main_wasm") + $(gz "$main_js")))
all_raw=0
all_gz=0
for file in "$dist"/*; do
    [[ -f "$file" ]] || continue
    all_raw=$((all_raw + $(raw "$file")))
    all_gz=$((all_gz + $(gz "$file")))
done
printf '| **main bundle** (wasm + JS) | | %s (%s) | %s (%s) |\n' \
    "$bundle_raw" "$(kib "$bundle_raw")" "$bundle_gz" "$(kib "$bundle_gz")"
printf '| **everything in %s** | | %s (%s) | %s (%s) |\n' \
    "$dist" "$all_raw" "$(kib "$all_raw")" "$all_gz" "$(kib "$all_gz")"
