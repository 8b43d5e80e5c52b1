#!/usr/bin/env bash
# CI set-up for the GGUF / Hugging Face / llama.cpp interop tests (tests/test_export_gguf.py,
# tests/test_export_hf.py, tests/test_llamacpp.py): installs the independent readers the tests check
# Nano's files with, and builds llama.cpp's tools once into ~/.cache/nano-llamacpp (idempotent; a
# cached build returns at once). Meant to be called from .ci/setup-llamacpp.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q "gguf>=0.10" "tokenizers>=0.19.1" "transformers>=4.45" "safetensors>=0.4" "jinja2>=3"
JOBS="${JOBS:-$(nproc)}" bash scripts/build_llamacpp.sh
