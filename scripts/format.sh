#!/usr/bin/env bash
# Format the host C code with clang-format (style: .clang-format, written for
# clang-format 14; other versions may format a few constructs differently).
#   bash scripts/format.sh           reformat, in place, the files that differ
#   bash scripts/format.sh --check   list the files that differ and how many of
#                                    their lines would change; exit 1 if any
# CLANG_FORMAT names the binary (default: clang-format-14, else clang-format).
# The CUDA sources (src/cuda) are not formatted.
set -euo pipefail
cd "$(dirname "$0")/.."
check=0
case "${1:-}" in
  --check) check=1 ;;
  "") ;;
  *) echo "usage: bash scripts/format.sh [--check]" >&2; exit 2 ;;
esac
cf=${CLANG_FORMAT:-}
if [ -z "$cf" ]; then
  if command -v clang-format-14 >/dev/null 2>&1; then cf=clang-format-14; else cf=clang-format; fi
fi
if ! command -v "$cf" >/dev/null 2>&1; then
  echo "format: $cf not found (apt-get install clang-format-14, or set CLANG_FORMAT)" >&2
  exit 2
fi
case "$("$cf" --version)" in
  *" 14."*) ;;
  *) echo "format: $("$cf" --version) is not clang-format 14: expect small differences" >&2 ;;
esac
shopt -s nullglob
files=(include/*.h src/*.h src/api/*.[ch] src/cpu/*.[ch] src/reference/*.[ch] tests/*.[ch] bench/*.[ch] dev/*.[ch])
bad=0 lines=0
for f in "${files[@]}"; do
  # Lines of the file that formatting would change or remove.
  n=$("$cf" --style=file "$f" | diff "$f" - | grep -c '^<' || true)
  [ "$n" -eq 0 ] && continue
  bad=$((bad + 1)); lines=$((lines + n))
  if [ $check -eq 1 ]; then
    printf '%6d  %s\n' "$n" "$f"
  else
    "$cf" --style=file -i "$f"
    echo "formatted $f ($n lines)"
  fi
done
if [ $bad -eq 0 ]; then
  echo "format: ${#files[@]} files, all formatted"
elif [ $check -eq 1 ]; then
  echo "format: $bad of ${#files[@]} files not formatted ($lines lines would change); bash scripts/format.sh fixes them"
  exit 1
fi
