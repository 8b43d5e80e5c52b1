#!/usr/bin/env bash
# Builds llama.cpp's command-line tools once into ~/.cache/nano-llamacpp (a peer for the GGUF export tests
# and the llama.cpp benchmarks; Nano never runs it). A cached build returns at once; a cold one takes a
# few CPU minutes. The Python readers those tests use (gguf, tokenizers, transformers, safetensors) come
# with the package's `test` extra into CI's fresh virtualenv.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${JOBS:-$(nproc)}" bash scripts/build_llamacpp.sh
