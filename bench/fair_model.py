#!/usr/bin/env python3
"""How fair can the fair-time dispatcher be at a given query rate? A model.

The fairness target compares the jobs' completed queries in 10 s windows.
Even a perfect dispatcher cannot make those counts equal: completions lag
dispatches by each query's processing time, and the mix of jobs among the
queries in flight drifts. This simulates the dispatcher's policy (src/sched/
fair.c: the job with the smallest dispatched/weight, ties to the job with
fewer queries in flight, then the lower id; one query per worker) over
workers that share the host's cores equally (processor sharing, like ten
single-threaded workers under the kernel's scheduler), with each query's
cost drawn within +-jitter of its job's mean. It prints, per scenario, the
largest and the median (max-min)/max gap of the weighted 10 s rates over
1 s-spaced windows after the first 10 s, as bench/jobs_bench.py fair
measures them on the real cluster.

This is a model for reading the benchmark, not a test of the code: it shares
no code with fair.c.

Usage: bench/fair_model.py [--seconds 300] [--seeds 4] [--workers 10]
       [--cores 2] [--scale 0.15] [--jitter 0.15] [--in-flight-charge 1]
       [--sticky 0]
--scale sets the cost of one ResNet50 query in seconds on one full core;
0.15 gives ~7 queries/s per job with two jobs, the rate the real cluster
reaches (bench/jobs_bench.py fair), 0.075 twice that.
"""
import argparse, bisect, json, random, statistics

# Relative costs of one query (batch 1): ResNet50, InceptionV3, tiny CNN.
SCENARIOS = {
    "two": ([1.0, 0.85], [1, 1]),
    "three": ([1.0, 0.85, 0.02], [1, 1, 1]),
    "weighted": ([1.0, 0.85], [2, 1]),
}


def simulate(costs, weights, seconds, workers, cores, jitter, seed, in_flight_charge=1.0,
             sticky=0.0):
    rnd = random.Random(seed)
    n = len(costs)
    vt = [0.0] * n          # dispatched / weight
    inflight = [0] * n
    done_at = [[] for _ in range(n)]
    running = [None] * workers  # [job, work left in core-seconds]

    def dispatch(w, previous=None):
        j = min(range(n), key=lambda k: (vt[k], inflight[k], k))
        # Variant: the freed slot goes back to the job that just finished if it
        # is within `sticky` queries of the furthest behind.
        if sticky > 0 and previous is not None and vt[previous] <= vt[j] + sticky / weights[previous]:
            j = previous
        # Variant: charge only part of a query at dispatch, the rest on completion.
        vt[j] += in_flight_charge / weights[j]
        inflight[j] += 1
        running[w] = [j, costs[j] * rnd.uniform(1 - jitter, 1 + jitter)]

    for w in range(workers):
        dispatch(w)
    t = 0.0
    while t < seconds:
        busy = [w for w in range(workers) if running[w]]
        share = min(1.0, cores / len(busy))
        dt = min(running[w][1] for w in busy) / share
        t += dt
        finished, previous = [], {}
        for w in busy:
            running[w][1] -= dt * share
            if running[w][1] <= 1e-12:
                finished.append(w)
        for w in finished:
            j = previous[w] = running[w][0]
            vt[j] += (1.0 - in_flight_charge) / weights[j]
            inflight[j] -= 1
            done_at[j].append(t)
            running[w] = None
        for w in finished:
            dispatch(w, previous[w])
    gaps = []
    for start in range(10, int(seconds) - 10):
        rates = [(bisect.bisect(d, start + 10) - bisect.bisect(d, start)) / 10 / weights[j]
                 for j, d in enumerate(done_at)]
        gaps.append((max(rates) - min(rates)) / max(rates))
    return {"max_gap": max(gaps), "median_gap": statistics.median(gaps),
            "queries_per_s": [round(len(d) / seconds, 2) for d in done_at]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--workers", type=int, default=10)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--scale", type=float, default=0.15)
    ap.add_argument("--jitter", type=float, default=0.15)
    ap.add_argument("--in-flight-charge", type=float, default=1.0,
                    help="variant: share of a query charged at dispatch (1 = the policy)")
    ap.add_argument("--sticky", type=float, default=0.0,
                    help="variant: a freed slot stays with its job within this many queries")
    args = ap.parse_args()
    out = {}
    for name, (costs, weights) in SCENARIOS.items():
        runs = [simulate([c * args.scale for c in costs], weights, args.seconds, args.workers,
                         args.cores, args.jitter, seed, args.in_flight_charge, args.sticky)
                for seed in range(1, args.seeds + 1)]
        out[name] = {"max_gap_per_seed": [round(r["max_gap"], 4) for r in runs],
                     "median_gap": round(statistics.median(r["median_gap"] for r in runs), 4),
                     "queries_per_s": runs[0]["queries_per_s"]}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
