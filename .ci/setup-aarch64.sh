#!/usr/bin/env bash
# Installs what the aarch64 cross-build and its emulated test need (see docs/toolchain.md):
# Debian's rustc with the standard library's source (built for aarch64 with -Z build-std), the aarch64
# linker and libc, and qemu's user-mode emulator. Fast when already installed.
set -euo pipefail
need=()
for pkg in rustc-web cargo-web rust-web-src gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
