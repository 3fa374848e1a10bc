"""Peak memory of a large pool: 1,000,000 RGB 32x32 images stored as a memory-mapped uint8 .npy.

Writes the pool in chunks to a temporary folder (3.07 GB for the default N; the free disk is checked
first, `--n` makes it smaller), opens it with `open_pool`, then does what the loop does with a pool:
fingerprints it (one streaming pass), scores it (every image once, float32 batches in order) and reads
random batches (the selected images, sent to the oracle). Then it runs an actual short `steal` over the
same file (the loop opens it itself): `--steal-rounds` rounds of `--steal-batch` queries, random
selection, a cnn2 substitute for 3x32x32, against a small fixed RGB callable target through
`CallableOracle(input_shape=(3, 32, 32))`. After each phase it prints the process's peak RSS
(getrusage; counts the file's pages the map has touched, which the kernel can drop at any time), its
peak anonymous RSS (/proc/self/status: sampled per batch, and every 20 ms by a thread during the steal;
the memory that is really ours) and the peak of traced allocations (tracemalloc), against the 12.3 GB
one float32 copy of the pool would take.

Run: flock /tmp/heavy.lock .venv/bin/python benchmarks/pool_memory.py [--n 1000000] [--dir /tmp]
     [--steal-rounds 3] [--steal-only]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from activethief import CallableOracle, steal
from activethief.data import Pool, open_pool
from activethief.training import FitConfig

SHAPE = (3, 32, 32)
GB = 1e9


def rss_status() -> dict[str, int]:
    """Current RssAnon and RssFile of this process in bytes (Linux), empty elsewhere."""
    values = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("RssAnon", "RssFile", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return values


class Meter:
    """Peaks of anonymous RSS (sampled when `sample` is called) and of the whole process (getrusage)."""

    def __init__(self) -> None:
        self.anon_peak = 0

    def sample(self) -> None:
        self.anon_peak = max(self.anon_peak, rss_status().get("RssAnon", 0))

    def report(self, phase: str, seconds: float, extra: str = "") -> None:
        self.sample()
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        traced = tracemalloc.get_traced_memory()[1]
        print(
            f"{phase:28s} {seconds:7.1f} s   peak RSS {maxrss / GB:6.2f} GB   peak anon RSS "
            f"{self.anon_peak / GB:5.2f} GB   peak traced {traced / GB:5.2f} GB  {extra}",
            flush=True,
        )


def write_pool(path: Path, n: int, meter: Meter, chunk: int = 20_000) -> None:
    """An .npy of uint8 [n, 3, 32, 32] written chunk by chunk (never more than one chunk in memory)."""
    rng = np.random.default_rng(0)
    with path.open("wb") as out:
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False}
        np.lib.format.write_array_header_1_0(out, {**header, "shape": (n, *SHAPE)})
        for start in range(0, n, chunk):
            block = rng.integers(0, 256, (min(chunk, n - start), *SHAPE), dtype=np.uint8)
            out.write(block.data)
            meter.sample()


def sweep(batches: Iterator[np.ndarray], meter: Meter) -> float:
    """Consume float32 batches as a model would (touch every value); returns their mean."""
    total, count = 0.0, 0
    for batch in batches:
        assert batch.dtype == np.float32 and batch.shape[1:] == SHAPE
        total += float(batch.sum(dtype=np.float64))
        count += batch.size
        meter.sample()
    return total / max(1, count)


def random_batches(pool: Pool, rounds: int, size: int) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(1)
    for _ in range(rounds):
        yield pool[rng.choice(len(pool), size, replace=False)]


class RgbTarget:
    """A fixed 10-class RGB target: a random linear map of 4x4-pooled pixels (counts images asked)."""

    def __init__(self) -> None:
        self.weights = np.random.default_rng(7).normal(size=(3 * 16, 10)).astype(np.float32)
        self.images = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.images += len(x)
        pooled = x.reshape(len(x), 3, 4, 8, 4, 8).mean((3, 5)).reshape(len(x), -1)
        logits = 8.0 * (pooled - 0.5) @ self.weights
        e = np.exp(logits - logits.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)


class Sampler:
    """Samples anonymous RSS every `interval` seconds in a thread (peaks between the loop's batches)."""

    def __init__(self, meter: Meter, interval: float = 0.02) -> None:
        self.meter, self.interval, self.stop = meter, interval, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            self.meter.sample()

    def __enter__(self) -> Sampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def run_steal(path: Path, rounds: int, batch: int, meter: Meter) -> None:
    """A short `steal` over the memory-mapped pool file: random selection, `rounds` rounds of `batch`."""
    target = RgbTarget()
    oracle = CallableOracle(target, 10, input_shape=SHAPE)
    fit = FitConfig(epochs=1, patience=1, batch_size=100, min_steps=20, warmup_steps=2)
    start = time.perf_counter()
    with Sampler(meter):
        result = steal(
            oracle,
            path,
            budget=rounds * batch,
            batch_size=batch,
            strategy="random",
            substitute="cnn2",
            seed=0,
            quiet=True,
            fit=fit,
        )
    seconds = time.perf_counter() - start
    meter.report(
        f"steal ({rounds} rounds of {batch}, random)",
        seconds,
        f"{result.queries_used} queries, target asked {target.images} images",
    )


def measure_pool(path: Path, nbytes: int, n: int, batch: int, meter: Meter) -> None:
    """What the loop does with a pool, phase by phase: open, fingerprint, score, read random batches."""
    start = time.perf_counter()
    pool = open_pool(path, SHAPE)
    meter.report("open_pool (memory map)", time.perf_counter() - start, pool.summary.storage)
    start = time.perf_counter()
    fingerprint = pool.fingerprint
    seconds = time.perf_counter() - start
    meter.report("fingerprint (streamed)", seconds, f"{nbytes / GB / seconds:.2f} GB/s {fingerprint[:16]}")
    start = time.perf_counter()
    mean = sweep(pool.batches(batch), meter)
    seconds = time.perf_counter() - start
    meter.report(f"score pass (batches {batch})", seconds, f"{n / seconds:,.0f} img/s mean {mean:.3f}")
    start = time.perf_counter()
    sweep(random_batches(pool, 200, 1000), meter)
    meter.report("200 random batches of 1000", time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="images in the pool (default 1,000,000)")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where to write it")
    parser.add_argument("--batch", type=int, default=1024, help="images per scoring batch")
    parser.add_argument("--steal-rounds", type=int, default=3, help="rounds of the short steal (0: none)")
    parser.add_argument("--steal-batch", type=int, default=100, help="queries per round of the steal")
    parser.add_argument("--steal-only", action="store_true", help="write the pool, then only the steal")
    args = parser.parse_args()
    nbytes = args.n * int(np.prod(SHAPE))
    free = shutil.disk_usage(args.dir).free
    if free < 1.2 * nbytes:
        sys.exit(
            f"{args.dir} has {free / GB:.1f} GB free; the pool needs {nbytes / GB:.1f} GB. Use a smaller --n"
        )
    print(
        f"pool: {args.n:,} x {SHAPE} uint8 = {nbytes / GB:.2f} GB on disk; "
        f"float32 equivalent {4 * nbytes / GB:.2f} GB"
    )
    baseline = rss_status().get("RssAnon", 0)
    print(
        f"{args.dir}: {free / GB:.0f} GB free; anonymous RSS after imports (torch too) {baseline / GB:.2f} GB"
    )
    meter = Meter()
    tracemalloc.start()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="pool-memory-") as tmp:
        path = Path(tmp) / "pool.npy"
        start = time.perf_counter()
        write_pool(path, args.n, meter)
        meter.report("write (chunks of 20,000)", time.perf_counter() - start)
        if not args.steal_only:
            measure_pool(path, nbytes, args.n, args.batch, meter)
        if args.steal_rounds:
            run_steal(path, args.steal_rounds, args.steal_batch, meter)
        status = rss_status()
        anon, file_backed = status.get("RssAnon", 0) / GB, status.get("RssFile", 0) / GB
        print(f"now: RssAnon {anon:.2f} GB, RssFile {file_backed:.2f} GB (the map's pages, reclaimable)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    floats = 4 * nbytes
    print(
        f"\npeak RSS {peak / GB:.2f} GB (anonymous {meter.anon_peak / GB:.2f} GB) vs one float32 copy "
        f"{floats / GB:.2f} GB: {floats / peak:.1f}x less ({floats / max(1, meter.anon_peak):.0f}x less "
        "anonymous memory)"
    )
    print(
        f"anonymous memory the pool work added over the imports: {(meter.anon_peak - baseline) / GB:.2f} GB"
    )


if __name__ == "__main__":
    main()
