#!/usr/bin/env bash
# The type stubs python/nano/_native.pyi against the built extension: fails on any difference (a function,
# class, argument or default present on one side only). Needs the package installed (maturin develop or the
# wheel) and mypy (the test extra).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m mypy.stubtest nano._native "$@"
