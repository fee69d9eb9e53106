#!/usr/bin/env bash
# Online requests of an online job under network faults (each node in its own
# network namespace): two clients keep asking through nodes that stay
# connected while
#   1. a worker is cut off from the network (its in-flight requests must be
#      run again elsewhere once membership declares it failed),
#   2. it comes back, and every link loses 10% of its packets,
#   3. the coordinator's packets to one worker are dropped (a one-way link:
#      the worker still looks alive to the others, so its runs must time out
#      and move on),
#   4. the coordinator's answers to one client's node dropped (each request
#      from there forwarded again, and answered once),
#   5. a one-way link without an online job (requests that pick their worker
#      themselves).
# Every request is answered, each right (top-1 equal to a bare ONNX Runtime
# run's), and the job counts exactly one query per answer (phases 1-3).
# timeout: 500
. "$(dirname "$0")/lib.sh"

N=24
text_lines "$N"
job_queries() { cli "$1" --json jobs | json "[j['queries_done'] for j in d['jobs'] if j['model'] == 'text_direction'][0]"; }

cluster up 5 >/dev/null
wait_leader node1
cli node1 train text_direction --file "$M" --card "$CARD" >/dev/null || fail "train"
cli node1 launch text_direction 4 --online >/dev/null || fail "launch --online"
L=$(cli node1 --json status | json 'd["leader"]')
others=(); for n in 1 2 3 4 5; do [ "node$n" != "$L" ] && others+=("node$n"); done
victim=${others[0]} oneway=${others[1]} clients=("${others[2]#node}" "${others[3]#node}")

# phase NAME START STOP: clients ask while START's fault holds, until N more
# answers came after it; then STOP, and every answer is checked.
phase() {
  rm -f "$D/stop"
  for c in "${clients[@]}"; do predict_loop "$c" "$1" 2 & done
  wait_until 30 answers_at_least "$1" 4 || fail "$1: no answers before the fault"
  eval "$2"
  local before; before=$(answers "$1")
  wait_until 90 answers_at_least "$1" $((before + 12)) || fail "$1: no answers under the fault"
  stop_loops "$1"
  eval "$3"
  echo "$1: $checked requests answered right"
}

phase isolated "cluster isolate $victim" "cluster heal $victim"
phase lossy "cluster loss 10" "cluster loss 0"
phase oneway "cluster block $L $oneway" "cluster heal $oneway"

# 4. the coordinator's answers to one client's node are dropped: each attempt
#    forwarded from there runs, but its answer is lost; the node sends the
#    request again after 5 s, through another voter, and the coordinator
#    answers the repeat from the run under way or done, without running it
#    again (each answer counted once below; the repeats were real)
L=$(cli "node${clients[1]}" --json status | json 'd["leader"]')
repeats=$(metric "$L" idunno_coordinator_online_repeats_total)
phase lost "cluster block $L node${clients[0]}" "cluster heal node${clients[0]}"
[ "$(metric "$L" idunno_coordinator_online_repeats_total)" -gt "$repeats" ] ||
  fail "no request was sent again while its answers were lost"

total=$(( $(answers isolated) + $(answers lossy) + $(answers oneway) + $(answers lost) ))
counted() { [ "$(job_queries "node${clients[0]}")" = "$total" ]; }
wait_until 20 counted || fail "the online job counts $(job_queries "node${clients[0]}") queries for $total answers"
echo "$total requests answered right and counted once through a cut-off worker, 10% loss, a one-way link and lost answers"

# 5. a one-way link without an online job: each request picks its
#    worker itself, and one whose run on the cut-off worker times out is
#    sent to another
cli "node${clients[0]}" stop text_direction >/dev/null || fail "stop"
L=$(cli "node${clients[1]}" --json status | json 'd["leader"]')
cut=$victim; [ "$cut" = "$L" ] && cut=$oneway
phase direct "cluster block $L $cut" "cluster heal $cut"
echo ok
