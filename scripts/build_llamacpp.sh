#!/usr/bin/env bash
# Builds llama.cpp's command-line tools (CPU only, tuned for this machine) as a test and benchmark peer
# for Nano's GGUF export. Nano never uses them at run time; tests that need them skip when they are absent.
#
# Source: the llama.cpp tree vendored in the `llama-cpp-python` source package on PyPI (pinned below, so
# a given checkout always compares against the same llama.cpp). cmake and ninja come from PyPI too, into a
# private tools venv. Everything lives in a cache outside the clone:
#
#   ${NANO_LLAMACPP_CACHE:-~/.cache/nano-llamacpp}/<version>/bin/llama-{tokenize,completion,bench,perplexity,quantize,simple}
#   (and llama-server, for benches/bench_serve.py --peer, with LLAMACPP_SERVER=1)
#
# Idempotent: a finished build (its bin/ holds every tool listed below and the stamp) returns at once; a
# tool added to the list later is built into the same cache. The script prints
# the bin directory on its last line; tests find it through NANO_LLAMACPP_BIN or this same default path.
#
#   scripts/build_llamacpp.sh            # build if missing
#   JOBS=4 scripts/build_llamacpp.sh     # parallel compile jobs (default: number of CPUs)
#   LLAMACPP_SERVER=1 scripts/build_llamacpp.sh   # also llama-server
#   LLAMACPP_SDIST=/path/to/llama_cpp_python-X.tar.gz scripts/build_llamacpp.sh   # use a downloaded sdist
set -euo pipefail

VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
ROOT="${NANO_LLAMACPP_CACHE:-$HOME/.cache/nano-llamacpp}"
DEST="$ROOT/$VERSION"
TOOLS=(llama-tokenize llama-completion llama-bench llama-perplexity llama-quantize llama-simple)
# The server is a benchmark peer only (no test needs it) and the longest build: on request.
if [ "${LLAMACPP_SERVER:-0}" = 1 ]; then
    TOOLS+=(llama-server)
fi
STAMP="$DEST/bin/.complete"
PY="${PYTHON:-python3}"

built() {
    [ -f "$STAMP" ] || return 1
    for tool in "${TOOLS[@]}"; do
        [ -x "$DEST/bin/$tool" ] || return 1
    done
}
if built; then
    echo "build_llamacpp: llama.cpp from llama-cpp-python $VERSION already built"
    echo "$DEST/bin"
    exit 0
fi
mkdir -p "$ROOT/src"

# cmake, ninja and (for the sdist's metadata step) scikit-build-core, in a venv of their own.
VENV="$ROOT/tools-venv"
if [ ! -x "$VENV/bin/cmake" ] || [ ! -x "$VENV/bin/ninja" ]; then
    echo "build_llamacpp: installing cmake and ninja from PyPI into $VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "cmake>=3.18" ninja scikit-build-core
fi
export PATH="$VENV/bin:$PATH"

SDIST="${LLAMACPP_SDIST:-$ROOT/src/llama_cpp_python-$VERSION.tar.gz}"
if [ ! -f "$SDIST" ]; then
    echo "build_llamacpp: downloading the llama-cpp-python $VERSION source package"
    tmp_dl=$(mktemp -d "$ROOT/src/dl.XXXXXX")
    # No build isolation: pip then reads the package metadata with the tools venv's scikit-build-core
    # instead of building a throw-away environment first.
    "$VENV/bin/python" -m pip download -q --disable-pip-version-check --no-binary :all: --no-deps \
        --no-build-isolation "llama-cpp-python==$VERSION" -d "$tmp_dl"
    mv "$tmp_dl"/llama_cpp_python-"$VERSION".tar.gz "$SDIST"
    rm -rf "$tmp_dl"
fi

SRC="$DEST/src"
if [ ! -f "$SRC/CMakeLists.txt" ]; then
    echo "build_llamacpp: extracting the vendored llama.cpp"
    tmp_x=$(mktemp -d "$ROOT/src/x.XXXXXX")
    tar -xzf "$SDIST" -C "$tmp_x" "llama_cpp_python-$VERSION/vendor/llama.cpp"
    mkdir -p "$DEST"
    rm -rf "$SRC"
    mv "$tmp_x/llama_cpp_python-$VERSION/vendor/llama.cpp" "$SRC"
    rm -rf "$tmp_x"
fi

BUILD="$DEST/build"
echo "build_llamacpp: configuring ($(cmake --version | head -1))"
cmake -S "$SRC" -B "$BUILD" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF \
    -DGGML_NATIVE=ON \
    -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_EXAMPLES=ON \
    -DLLAMA_BUILD_TOOLS=ON >"$DEST/configure.log" 2>&1 || { tail -40 "$DEST/configure.log"; exit 1; }

echo "build_llamacpp: building ${TOOLS[*]}"
cmake --build "$BUILD" -j "${JOBS:-$(nproc)}" --target "${TOOLS[@]}"

# Publish the binaries all at once: bin/ appears only when every tool is there.
tmp_bin=$(mktemp -d "$DEST/bin.XXXXXX")
for tool in "${TOOLS[@]}"; do
    cp "$BUILD/bin/$tool" "$tmp_bin/"
done
echo "$VERSION" >"$tmp_bin/.complete"
rm -rf "$DEST/bin"
mv "$tmp_bin" "$DEST/bin"
echo "build_llamacpp: done"
echo "$DEST/bin"
