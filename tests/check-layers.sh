#!/usr/bin/env bash
# Checks the layering of src/: the folders of src/ and the includes between
# them form a graph (src/A/x.c including "B/y.h" is an edge A -> B), which
#   (a) must have no cycle, and
#   (b) must have no edge into node/ except from node/ itself and cli/ (node/
#       is the daemon: it wires the layers together, none of them calls it).
# On success prints the folders in layer order (each one's includes point only
# to folders listed before it) and exits 0; otherwise names every offending
# edge and cycle, with the includes that make it, and exits 1.
#
#   tests/check-layers.sh          # this tree
#   tests/check-layers.sh DIR      # the tree at DIR (DIR/src)
set -euo pipefail

root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
src="$root/src"
[ -d "$src" ] || { echo "check-layers: no $src" >&2; exit 2; }

# Folders that may include node/.
node_users="node cli"

folders=$(find "$src" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort)

# Every quoted include, as "FILE:LINE:TEXT"; the awk program below keeps those
# whose first path component is a folder of src/ (so not the generated
# headers, nor a file's neighbours named without their folder).
includes=$(cd "$src" && grep -rnE --include='*.c' --include='*.h' \
  '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' . | sort -t: -k1,1 -k2,2n || true)

printf '%s\n' "$includes" | awk -v folders="$folders" -v node_users="$node_users" '
function arrow_path(from, to,    q, head, tail, seen, prev, x, y, path, i) {
  # shortest path from -> ... -> to over the edges, as "a -> b -> c"
  head = tail = 1; q[1] = from; seen[from] = 1
  while (head <= tail) {
    x = q[head++]
    for (i = 1; i <= nf; i++) {
      y = f[i]
      if (!((x, y) in dep) || (y in seen)) continue
      seen[y] = 1; prev[y] = x; q[++tail] = y
    }
  }
  if (!(to in seen)) return ""
  path = to
  for (x = to; x != from; x = prev[x]) path = prev[x] " -> " path
  return path
}
function reaches(from, to,    p) {
  p = arrow_path(from, to)
  return p != ""
}
function evidence(a, b,    n, i, parts) {
  n = split(why[a, b], parts, SUBSEP)
  for (i = 1; i <= n && i <= 3; i++) printf "      %s\n", parts[i]
  if (n > 3) printf "      (and %d more)\n", n - 3
}
function canonical(cycle,    n, i, k, best, parts, s) {
  # "a -> b -> c -> a" rotated to start at its alphabetically first folder
  n = split(cycle, parts, / -> /) - 1
  best = 1
  for (i = 2; i <= n; i++) if (parts[i] < parts[best]) best = i
  s = parts[best]
  for (k = 1; k <= n; k++) s = s " -> " parts[(best - 1 + k) % n + 1]
  return s
}
BEGIN {
  nf = split(folders, f, "\n")
  for (i = 1; i <= nf; i++) isfolder[f[i]] = 1
  split(node_users, u, " ")
  for (i in u) may_include_node[u[i]] = 1
  users = node_users; gsub(/ /, "/, ", users); users = users "/"
}
{
  # ./A/sub/x.c:LINE:#include "B/y.h"
  line = $0
  file = line; sub(/:.*/, "", file); sub(/^\.\//, "", file)
  rest = substr(line, length("./" file) + 2)
  lineno = rest; sub(/:.*/, "", lineno)
  inc = line; sub(/^[^"]*"/, "", inc); sub(/".*/, "", inc)
  written = inc
  while (inc ~ /^\.\.?\//) sub(/^\.\.?\//, "", inc)
  a = file; sub(/\/.*/, "", a)
  if (index(inc, "/") == 0) next
  b = inc; sub(/\/.*/, "", b)
  if (!(a in isfolder) || !(b in isfolder) || a == b) next
  if (!((a, b) in dep)) { dep[a, b] = 1; nedges++ }
  ev = "src/" file ":" lineno " includes \"" written "\""
  if ((a, b) in why) why[a, b] = why[a, b] SUBSEP ev
  else why[a, b] = ev
}
END {
  bad = 0

  # (b) edges into node/
  for (i = 1; i <= nf; i++) {
    a = f[i]
    if (!((a, "node") in dep) || (a in may_include_node)) continue
    if (!bad++) print "check-layers: FAIL"
    printf "  %s -> node: only %s may include node/\n", a, users
    evidence(a, "node")
  }

  # (a) cycles: for each group of folders that reach each other, the shortest
  # cycle through each of its edges, then every edge of the group.
  for (i = 1; i <= nf; i++) {
    x = f[i]
    if (x in done) continue
    members = ""; nm = 0
    for (j = 1; j <= nf; j++) {
      y = f[j]
      if (y != x && reaches(x, y) && reaches(y, x)) { members = members " " y; nm++; done[y] = 1 }
    }
    if (nm == 0) continue
    done[x] = 1
    if (!bad++) print "check-layers: FAIL"
    ng = split(x members, grp, " ")
    for (k = 1; k <= ng; k++) for (j = 1; j <= ng; j++) if ((grp[k], grp[j]) in dep) {
      c = canonical(grp[k] " -> " arrow_path(grp[j], grp[k]))
      if (c in printed) continue
      printed[c] = 1
      printf "  cycle: %s\n", c
    }
    printf "  the edges among %s:\n", x members
    for (k = 1; k <= ng; k++) for (j = 1; j <= ng; j++) if ((grp[k], grp[j]) in dep) {
      printf "    %s -> %s\n", grp[k], grp[j]
      evidence(grp[k], grp[j])
    }
  }
  if (bad) exit 1

  # layer order: a folder comes after everything it includes; level = 1 + the
  # highest level among its includes (0 for none).
  left = nf
  while (left > 0) {
    progressed = 0
    for (i = 1; i <= nf; i++) {
      x = f[i]
      if (x in level) continue
      lv = 0; ready = 1
      for (j = 1; j <= nf; j++) {
        y = f[j]
        if (!((x, y) in dep)) continue
        if (!(y in level)) { ready = 0; break }
        if (level[y] + 1 > lv) lv = level[y] + 1
      }
      if (!ready) continue
      newlevel[x] = lv; progressed = 1
    }
    for (i = 1; i <= nf; i++) if (f[i] in newlevel) { level[f[i]] = newlevel[f[i]]; left--; delete newlevel[f[i]] }
    if (!progressed) { print "check-layers: internal error: no order found"; exit 2 }
  }
  printf "check-layers: ok: %d folders, %d edges, no cycle, no folder but %s includes node/\n", nf, nedges + 0, users
  print "layer order (each folder includes only folders on earlier lines):"
  for (lv = 0; lv < nf; lv++) {
    for (i = 1; i <= nf; i++) {
      x = f[i]
      if (level[x] != lv) continue
      uses = ""
      for (j = 1; j <= nf; j++) if ((x, f[j]) in dep) uses = uses (uses == "" ? "" : " ") f[j]
      if (uses == "") printf "  %d  %s\n", lv, x
      else printf "  %d  %-7s -> %s\n", lv, x, uses
    }
  }
}'
