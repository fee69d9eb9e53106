#!/usr/bin/env bash
# embed-text.sh FILE — prints FILE as the lines of one C string literal, to be
# included between `const char name[] =` and `;`. Backslashes and double quotes
# are escaped; every line keeps its newline. Used for the dashboard page, which
# is kept as a plain HTML file (src/http/dashboard.html) so it can be edited and
# checked as HTML.
set -euo pipefail
file=${1:?usage: embed-text.sh FILE}
[ -s "$file" ] || { echo "embed-text.sh: $file is missing or empty" >&2; exit 1; }
echo "/* Generated from $file by scripts/embed-text.sh: edit that file instead. */"
sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$/\\n"/' "$file"
