#!/usr/bin/env bash
# Builds the WASM engine (rust/wasm, wasm-bindgen over nano-infer, SIMD128) into python/nano/web/pkg/
# (or the folder given as the first argument), where `python -m nano.web` serves it from and the wheel
# picks it up. The built package is committed, so users need no wasm toolchain; rebuild and commit it
# whenever its sources change. `scripts/build_wasm.sh --sources-hash` prints the hash of those sources,
# which the package records in BUILT_FROM and CI (.ci/after-wasm.sh) compares.
#
# Two toolchains are supported:
#  * rustup with the wasm32-unknown-unknown target installed (a developer laptop);
#  * Debian's rustc-web / cargo-web / rust-web-src (CI and these machines: rustup cannot download the
#    wasm32 target here), building std itself with -Z build-std (RUSTC_BOOTSTRAP=1 unlocks it).
# Post-processing uses wasm-pack (`--mode force --no-opt`: no toolchain checks, no downloads) when it is
# installed, else the wasm-bindgen CLI directly; either needs wasm-bindgen-cli of the exact version that
# rust/wasm/Cargo.toml pins. .ci/setup-wasm.sh installs all of this (docs/toolchain.md).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CRATE="$ROOT/rust/wasm"

# Everything the engine is built from: the three crates' sources and manifests, the workspace manifest,
# the resolved versions of the crates it depends on (not the whole Cargo.lock, which other crates change
# too), and this script. Compiler versions are not included: they are recorded beside the hash instead.
sources_hash() {
    {
        find rust/infer/src rust/tokenizer/src rust/wasm/src -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
        sha256sum Cargo.toml rust/infer/Cargo.toml rust/tokenizer/Cargo.toml rust/wasm/Cargo.toml scripts/build_wasm.sh
        cargo tree --locked --quiet -p nano-wasm --target wasm32-unknown-unknown -e normal,build --prefix none \
            --format '{p}' | sed 's/ (.*)$//' | LC_ALL=C sort -u
    } | sha256sum | cut -d' ' -f1
}
if [ "${1:-}" = "--sources-hash" ]; then
    sources_hash
    exit 0
fi
OUT=$(realpath -m "${1:-$ROOT/python/nano/web/pkg}")
# A separate target dir: Debian's compiler and rustup's must not share artifacts.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/wasm"
# Source paths in panic locations are written relative (registry/…, rust/…, ./…), so the package names no
# directory of the machine that built it and two clones in different places build the same bytes.
REMAP="--remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}/registry/src=registry"
REMAP="$REMAP --remap-path-prefix=/usr/lib/rustlib/src/rust=rust --remap-path-prefix=$ROOT=."
export RUSTFLAGS="-C target-feature=+simd128 $REMAP"
# One optimisation unit across all crates: the kernels inline into the engine (only this build).
export CARGO_PROFILE_RELEASE_LTO=fat CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
TARGET=wasm32-unknown-unknown
PROFILE_FLAGS=()

if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
    echo "build_wasm: using rustup's $TARGET target"
    CARGO=(cargo)
elif [ -x /usr/bin/cargo ] && [ -x /usr/bin/rustc ] && [ -d /usr/lib/rustlib/src/rust/library ]; then
    echo "build_wasm: using Debian's toolchain ($(/usr/bin/rustc --version)) with -Z build-std"
    # Debian's cargo/rustc first on PATH for this build only (rustup's proxies usually come first).
    export PATH="/usr/bin:$PATH" RUSTC_BOOTSTRAP=1
    CARGO=(/usr/bin/cargo)
    PROFILE_FLAGS=(-Z build-std=std,panic_abort)
else
    echo "build_wasm: no wasm32 toolchain: run 'rustup target add $TARGET', or on Debian" >&2
    echo "            'apt-get install rustc-web cargo-web rust-web-src lld-22' (see .ci/setup-wasm.sh)" >&2
    exit 1
fi

want=$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)".*/\1/p' "$CRATE/Cargo.toml")
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
    echo "build_wasm: wasm-bindgen CLI $want is needed (found: ${have:-none});" \
         "run: cargo install wasm-bindgen-cli --version =$want" >&2
    exit 1
fi

rm -rf "$OUT.tmp"
if command -v wasm-pack >/dev/null 2>&1; then
    wasm-pack --log-level warn build "$CRATE" --release --target web --mode force --no-opt --no-pack \
        --out-dir "$OUT.tmp" --out-name nano_wasm -- "${PROFILE_FLAGS[@]}"
fi
# wasm-pack has been seen to exit 0 without writing its output on a machine where it ran for the first
# time (offline); the plain cargo + wasm-bindgen route then produces the same package.
if [ ! -f "$OUT.tmp/nano_wasm_bg.wasm" ]; then
    [ -d "$OUT.tmp" ] && echo "build_wasm: wasm-pack wrote no package; building with wasm-bindgen directly" >&2
    rm -rf "$OUT.tmp"
    "${CARGO[@]}" build -p nano-wasm --release --target "$TARGET" "${PROFILE_FLAGS[@]}"
    wasm-bindgen --target web --out-dir "$OUT.tmp" --out-name nano_wasm \
        "$CARGO_TARGET_DIR/$TARGET/release/nano_wasm.wasm"
fi
# The other variants, built with the wasm-bindgen CLI into $OUT.<suffix> and moved in beside the first:
#  * relaxed: +relaxed-simd (faster exact integer dots and fused f32 multiply-add, see
#    rust/infer/src/kernels/wasm.rs). Only its .wasm is kept: its JS glue must be the same as the plain
#    build's, so the worker can hand either module to the one nano_wasm.js.
#  * mt, mt-relaxed: WASM threads (+atomics: shared memory, imported so that the page's Web Workers can
#    share it; wasm-bindgen's thread transform needs the TLS symbols exported), the engine's team on Web
#    Workers (rust/wasm/src/team.rs). The page loads them only when cross-origin isolated. Their glue
#    (nano_wasm_mt.js) is the mt build's; the mt-relaxed build must have the same.
# The memory may grow to 4 GiB as the plain build's does (a shared memory must declare its maximum).
# A separate target dir per variant because the flags differ (sharing one would rebuild everything).
THREADS="+atomics,+bulk-memory,+mutable-globals"
SHARED_MEMORY="-C link-arg=--shared-memory -C link-arg=--import-memory -C link-arg=--max-memory=4294967296"
for tls in __wasm_init_tls __tls_size __tls_align __tls_base; do
    SHARED_MEMORY="$SHARED_MEMORY -C link-arg=--export=$tls"
done
variant() { # SUFFIX NAME FEATURES [LINK_FLAGS]: builds $OUT.SUFFIX/NAME.js and NAME_bg.wasm
    local dir="$CARGO_TARGET_DIR-$1"
    CARGO_TARGET_DIR="$dir" RUSTFLAGS="-C target-feature=$3 ${4:-} $REMAP" \
        "${CARGO[@]}" build -p nano-wasm --release --target "$TARGET" "${PROFILE_FLAGS[@]}"
    rm -rf "$OUT.$1"
    wasm-bindgen --target web --out-dir "$OUT.$1" --out-name "$2" "$dir/$TARGET/release/nano_wasm.wasm"
}
same_glue() { # A B: two variants' JS glue must be identical
    if ! cmp -s "$1" "$2"; then
        echo "build_wasm: the JS glue $1 differs from $2" >&2
        exit 1
    fi
}
variant relaxed nano_wasm +simd128,+relaxed-simd
same_glue "$OUT.relaxed/nano_wasm.js" "$OUT.tmp/nano_wasm.js"
mv "$OUT.relaxed/nano_wasm_bg.wasm" "$OUT.tmp/nano_wasm_relaxed_bg.wasm"
variant mt nano_wasm_mt "+simd128,$THREADS" "$SHARED_MEMORY"
variant mt-relaxed nano_wasm_mt "+simd128,+relaxed-simd,$THREADS" "$SHARED_MEMORY"
same_glue "$OUT.mt-relaxed/nano_wasm_mt.js" "$OUT.mt/nano_wasm_mt.js"
mv "$OUT.mt/nano_wasm_mt.js" "$OUT.mt/nano_wasm_mt_bg.wasm" "$OUT.tmp/"
mv "$OUT.mt-relaxed/nano_wasm_mt_bg.wasm" "$OUT.tmp/nano_wasm_mt_relaxed_bg.wasm"
rm -rf "$OUT.relaxed" "$OUT.mt" "$OUT.mt-relaxed"

# Keep only what the page loads (wasm-pack also writes a .gitignore, which would hide the files from
# packaging tools), record what it was built from, then swap the new package in whole.
find "$OUT.tmp" -type f ! -name '*.js' ! -name '*.wasm' -delete
{
    echo "sources $(sources_hash)"
    rustc --version
    echo "wasm-bindgen $have"
} > "$OUT.tmp/BUILT_FROM"
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
ls -l "$OUT"
