#!/usr/bin/env bash
# Install what building lightning-attn needs, if missing (Debian/Ubuntu;
# needs root or sudo).  Safe to run again: it installs nothing present.
set -euo pipefail
# `setup.sh gate` also installs what tests/gate/run needs: clang with LLVM's
# OpenMP runtime (ThreadSanitizer) and clang-format.
need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v gcc >/dev/null 2>&1 || need+=(gcc)
command -v make >/dev/null 2>&1 || need+=(make)
if [ "${1:-}" = gate ]; then
  command -v clang >/dev/null 2>&1 || need+=(clang)
  command -v clang-format >/dev/null 2>&1 || need+=(clang-format)
  if ! command -v clang >/dev/null 2>&1 || [ ! -f "$(clang -print-resource-dir)/../../libarcher.so" ]; then
    need+=(libomp-dev)
  fi
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -q && $SUDO apt-get install -y -q "${need[@]}"
fi
