#!/usr/bin/env bash
# What ships is what the sources build. The page's WASM package is committed (python/nano/web/pkg/, so
# that `pip install .` needs no wasm toolchain) and the README test command has already tested the page
# with it. Here:
#  1. the committed package must record the hash of the current sources (BUILT_FROM; a change to the
#     engine's sources without a rebuild fails here);
#  2. the sources are rebuilt into a separate folder, and whether the bytes equal the committed ones is
#     reported (a different compiler release may change the bytes; that alone is not a failure);
#  3. when the bytes differ, the page and engine tests (the threaded build's too) run again with the
#     fresh build swapped into the installed package (identical bytes were tested by the README test
#     command already).
# Runs inside .ci/run's virtualenv (CI_TMP is its scratch folder).
set -euo pipefail
cd "$(dirname "$0")/.."
committed=python/nano/web/pkg
fresh="${CI_TMP:?run from .ci/run}/pkg-fresh"

want=$(bash scripts/build_wasm.sh --sources-hash)
have=$(sed -n 's/^sources //p' "$committed/BUILT_FROM" 2>/dev/null || true)
if [ "$have" != "$want" ]; then
    echo "after-wasm: $committed was built from other sources (recorded ${have:-nothing}, now $want):" >&2
    echo "            run scripts/build_wasm.sh and commit $committed" >&2
    exit 1
fi
echo "after-wasm: the committed package records the current sources ($want)"

bash scripts/build_wasm.sh "$fresh"
echo "after-wasm: committed build: $(tail -n +2 "$committed/BUILT_FROM" | tr '\n' ' ')"
echo "after-wasm: fresh build:     $(tail -n +2 "$fresh/BUILT_FROM" | tr '\n' ' ')"
if diff -r -q "$committed" "$fresh"; then
    echo "after-wasm: the fresh build is byte for byte the committed one (tested by the README test command)"
    exit 0
fi
echo "after-wasm: the fresh build's bytes differ from the committed ones (listed above); testing the fresh one"

installed=$(python3 -c 'import nano.web.server as s; print(s.WEB_DIR / s.PKG_DIR)')
rm -rf "$installed"
cp -r "$fresh" "$installed"
python3 -m pytest -q -p no:cacheprovider tests/test_web_page.py tests/test_web_server.py tests/test_web_chat.py \
    tests/test_web_threads.py
