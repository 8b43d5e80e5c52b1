#!/usr/bin/env bash
# Installs what rebuilding the WASM engine and the browser tests need (docs/toolchain.md). The page's
# built package (python/nano/web/pkg/) is committed; .ci/after-wasm.sh rebuilds it from the sources and
# tests the page with both. Idempotent and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's Rust (with std's source, for -Z build-std to wasm32), the wasm linker, headless Chromium
# and a CJK font (so the screenshot of Chinese model output is legible).
need=()
for pkg in rustc-web cargo-web rust-web-src lld-22 chromium fonts-wqy-microhei; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
# Node runs the engine's kernel checks outside the browser (tests/web/node_check.mjs); any recent one will do.
command -v node >/dev/null 2>&1 || need+=(nodejs)
if [ ${#need[@]} -gt 0 ]; then
    echo "setup-wasm: apt-get install ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# wasm-bindgen CLI of exactly the version rust/wasm pins, and wasm-pack (used offline: see build_wasm.sh).
export PATH="$HOME/.cargo/bin:$PATH"
want=$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)".*/\1/p' rust/wasm/Cargo.toml)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$want" ]; then
    env -u CARGO_TARGET_DIR cargo install --quiet wasm-bindgen-cli --version "=$want"
fi
if ! command -v wasm-pack >/dev/null 2>&1; then
    env -u CARGO_TARGET_DIR cargo install --quiet wasm-pack --version "=0.15.1"
fi
# Python Playwright (which drives the Debian Chromium) comes with the test extras in CI's virtualenv;
# never `playwright install` (it downloads a browser).
