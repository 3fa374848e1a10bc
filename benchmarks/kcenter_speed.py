"""Time k-center greedy on a 1,000,000 x 10 pool (1,000 labelled, 1,000 picks) and its peak extra memory.

Run: OMP_NUM_THREADS=2 python benchmarks/kcenter_speed.py [--pool N] [--labelled L] [--k K]
Prints figures only; the target is <= 10 s on 2 cores with memory linear in the pool.
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np

from activethief.selection import DEFAULT_CHUNK_SIZE, KCenter


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--labelled", type=int, default=1_000)
    parser.add_argument("--k", type=int, default=1_000)
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    probs = rng.dirichlet(np.ones(args.classes), size=args.pool).astype(np.float32)
    order = rng.permutation(args.pool).astype(np.int64)
    labelled, candidates = order[: args.labelled], np.sort(order[args.labelled :])
    strategy = KCenter(chunk_size=args.chunk_size)
    input_mib = (probs.nbytes + order.nbytes + candidates.nbytes) / 2**20

    rss_before = _max_rss_mib()
    tracemalloc.start()
    start = time.perf_counter()
    chosen = strategy.select(probs, labelled, candidates, args.k, np.random.default_rng(args.seed))
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    print(f"pool {args.pool:,} x {args.classes}, labelled {args.labelled:,}, picks {args.k:,}")
    print(f"selected {chosen.size:,} unique: {np.unique(chosen).size == chosen.size}")
    print(f"seconds: {seconds:.2f}")
    print(f"peak extra memory (tracemalloc): {peak / 2**20:.1f} MiB = {peak / args.pool:.1f} B/point")
    print(f"inputs: {input_mib:.1f} MiB; max RSS {rss_before:.0f} MiB before, {_max_rss_mib():.0f} MiB after")


if __name__ == "__main__":
    main()
