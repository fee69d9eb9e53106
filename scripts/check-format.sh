#!/usr/bin/env bash
# Checks that the C sources are formatted as .clang-format says, without
# changing them.
#
#   scripts/check-format.sh              # every file `make format` formats
#   scripts/check-format.sh FILE...      # only these
#   scripts/check-format.sh -v [FILE...] # also every place clang-format would change
#
# Prints each file clang-format would change, with the number of places, and
# exits 1 if there is one; exits 0 when all are formatted, 2 when it cannot
# check (no clang-format, no .clang-format). `make format` fixes the files.
set -euo pipefail

cd "$(dirname "$0")/.."

verbose=0
if [ "${1:-}" = "-v" ]; then
  verbose=1
  shift
fi

command -v clang-format >/dev/null || { echo "check-format: clang-format is not installed (scripts/install-deps.sh)" >&2; exit 2; }
[ -f .clang-format ] || { echo "check-format: no .clang-format at the top of the tree" >&2; exit 2; }

if [ "$#" -gt 0 ]; then
  files=("$@")
else
  mapfile -t files < <(git ls-files 'src/*.c' 'src/*.h' 'tests/*.c' 'fuzz/*.c')
fi
[ "${#files[@]}" -gt 0 ] || { echo "check-format: no files to check" >&2; exit 2; }

# One clang-format for all the files; each place it would change is one
# "FILE:LINE:COL: error: code should be clang-formatted" line on stderr.
# --ferror-limit=0 lifts the default limit of 20 places per file.
out=$(clang-format --dry-run -Werror --ferror-limit=0 --style=file "${files[@]}" 2>&1 >/dev/null) && status=0 || status=$?

[ "$verbose" -eq 1 ] && [ -n "$out" ] && printf '%s\n' "$out"

report=$(printf '%s\n' "$out" | awk -F: '
  / error: code should be clang-formatted/ { n[$1]++; if (!($1 in seen)) { seen[$1] = 1; order[++k] = $1 } }
  END { for (i = 1; i <= k; i++) printf "%s: %d place%s to reformat\n", order[i], n[order[i]], n[order[i]] == 1 ? "" : "s" }')

if [ -n "$report" ]; then
  printf '%s\n' "$report"
  echo "check-format: $(printf '%s\n' "$report" | wc -l) of ${#files[@]} files are not formatted (make format fixes them)"
  exit 1
fi
if [ "$status" -ne 0 ]; then
  # clang-format failed for another reason (a missing file, a bad .clang-format).
  printf '%s\n' "$out" >&2
  echo "check-format: clang-format failed (status $status)" >&2
  exit 2
fi
echo "check-format: all ${#files[@]} files are formatted"
