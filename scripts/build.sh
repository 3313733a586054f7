#!/usr/bin/env bash
# Configure and build into build/ (Release).  Extra arguments go to cmake.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@" >build.log 2>&1 || { cat build.log; exit 1; }
grep -E "lightning-attn:" build.log || true
cmake --build build -j"$(nproc)" 2>&1 | grep -E "warning|error|Error" || true
test -x build/la_bench
