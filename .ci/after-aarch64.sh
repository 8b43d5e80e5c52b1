#!/usr/bin/env bash
# Cross-builds nano-infer's kernel tests for aarch64-unknown-linux-gnu and runs them under qemu: the
# NEON and NEON+dotprod paths must reproduce the scalar q8_0 / q4_0 golden hashes bit for bit.
# Uses Debian's rustc (-Z build-std; see docs/toolchain.md) and its own target dir.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v qemu-aarch64-static >/dev/null || ! command -v aarch64-linux-gnu-gcc >/dev/null; then
    echo "aarch64 toolchain missing: run .ci/setup-aarch64.sh" >&2
    exit 1
fi
export CARGO_TARGET_DIR="${AARCH64_TARGET_DIR:-$HOME/.cache/nano-ci/target-aarch64}"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
# qemu's default CPU model ("max") reports NEON and dotprod, so both paths run.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64-static -L /usr/aarch64-linux-gnu"
PATH=/usr/bin:$PATH RUSTC_BOOTSTRAP=1 cargo test --release -p nano-infer --lib \
    --no-default-features --features threads \
    --target aarch64-unknown-linux-gnu -Z build-std \
    kernels:: -- --nocapture 2>&1 | tee /tmp/nano-aarch64-test.log
# The golden test must have run the NEON paths, not only the scalar reference.
grep -q "^neon-dotprod: q8_0" /tmp/nano-aarch64-test.log
grep -q "^neon: q8_0" /tmp/nano-aarch64-test.log
