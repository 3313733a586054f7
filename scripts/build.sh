#!/usr/bin/env bash
# Configure and build into build/ (Release).  Extra arguments go to cmake.
# LA_CUDA_ARCH picks the CUDA architectures: native (default: this machine's
# GPUs, CPU backend only where there is none), all, or a list such as 80;90.
# Passed on every configure, so build/ follows the caller rather than the
# value cached by the previous one.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DLA_CUDA_ARCH="${LA_CUDA_ARCH:-native}" "$@" >build.log 2>&1 || { cat build.log; exit 1; }
grep -E "lightning-attn:" build.log || true
cmake --build build -j"$(nproc)" 2>&1 | grep -E "warning|error|Error" || true
test -x build/la_bench
