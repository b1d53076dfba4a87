#!/bin/sh
# tests/lint/format.sh: every C file follows .clang-format (STYLE B10).
# Exits 77 (meson: skipped) when clang-format is not installed.
root=${1:?usage: format.sh ROOT}
cd "$root" || exit 2
command -v clang-format >/dev/null 2>&1 || { echo "clang-format not installed"; exit 77; }
files=$(find include engine net tools tests bench docs/examples -name '*.[ch]' 2>/dev/null | sort)
status=0
for f in $files; do
    if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
        echo "$f: not formatted (run clang-format -i $f)"
        status=1
    fi
done
[ "$status" -eq 0 ] && echo "format: ok"
exit "$status"
