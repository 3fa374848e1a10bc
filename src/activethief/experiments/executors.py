"""Executors: run jobs serially, in a local process pool, or as Ray tasks; results come back to the driver.

Every executor runs a cell the same way (`cells.execute`, with the cell's torch thread count set inside
the worker), so with the same seeds and the same threads per cell all three give identical rows. Only
the driver appends results, so the results file has one writer.

CPU split: a cell trains a small CNN whose batches parallelise well over two threads, and on a 2-core
machine one 2-thread process beat two 1-thread processes, so by default each cell gets
`DEFAULT_THREADS` threads and there are as many workers as such cells fit on the CPUs. `--workers N`
alone divides the CPUs between N workers; `--threads` sets threads per cell explicitly.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

from activethief.errors import ConfigError
from activethief.experiments.cells import Job, Outcome, execute, execute_here
from activethief.experiments.inputs import InputSpec, load_inputs

DEFAULT_THREADS = 2

OnDone = Callable[[Job, Outcome], None]


def available_cpus() -> int:
    """CPUs this process may use (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS and Windows
        return os.cpu_count() or 1


def split_cpus(cpus: int, workers: int | None = None, threads: int | None = None) -> tuple[int, int]:
    """(workers, torch threads per worker) for `cpus` CPUs; see the module docstring for the defaults."""
    if (workers is not None and workers < 1) or (threads is not None and threads < 1):
        raise ConfigError(f"workers and threads must be >= 1 (got {workers}, {threads})")
    if threads is None:
        threads = max(1, cpus // workers) if workers is not None else max(1, min(DEFAULT_THREADS, cpus))
    if workers is None:
        workers = max(1, cpus // threads)
    return workers, threads


class Executor(Protocol):
    """Runs jobs and reports each outcome to `on_done` (in the driver) as soon as it is known."""

    name: str
    workers: int
    threads: int

    def run(self, jobs: Sequence[Job], on_done: OnDone) -> None: ...


class SerialExecutor:
    """One cell after another in this process."""

    name = "serial"

    def __init__(self, *, threads: int | None = None) -> None:
        self.workers, self.threads = 1, split_cpus(available_cpus(), None, threads)[1]

    def run(self, jobs: Sequence[Job], on_done: OnDone) -> None:
        for job in jobs:
            on_done(job, execute_here(job))


class LocalPoolExecutor:
    """A pool of `workers` spawned processes; each loads the inputs once and runs cells with `threads`."""

    name = "process-pool"

    def __init__(self, workers: int | None = None, *, threads: int | None = None) -> None:
        self.workers, self.threads = split_cpus(available_cpus(), workers, threads)

    def run(self, jobs: Sequence[Job], on_done: OnDone) -> None:
        # spawn, not fork: forking a process whose torch thread pool already started can deadlock.
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=self.workers, mp_context=context) as pool:
            futures = {pool.submit(execute_here, job): job for job in jobs}
            try:
                for future in concurrent.futures.as_completed(futures):
                    try:
                        outcome = future.result()
                    except Exception as exc:  # the worker died or could not load the inputs
                        outcome = Outcome(error=f"worker failed: {exc!r}")
                    on_done(futures[future], outcome)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                for process in list(getattr(pool, "_processes", {}).values()):
                    process.terminate()  # finished cells are saved; the running ones start over next time
                raise


class RayExecutor:
    """Cells as Ray tasks (`num_cpus` = threads per cell); results return to the driver, which saves them.

    Args:
        address: `auto` (the running cluster), `HOST:PORT`, `local` (start a local Ray), or None (Ray's
            default: RAY_ADDRESS or a new local instance). An already initialised Ray is used as it is.
        threads: torch threads per task (and the CPUs each task reserves).
        max_retries: how often Ray reruns a task whose worker died.

    The inputs (pool, test set, target weights) go into the object store once per dataset, so worker
    nodes need neither the dataset cache nor the target file, only `activethief` installed. Tasks do not
    checkpoint: a cell interrupted on a node starts over.
    """

    name = "ray"

    def __init__(
        self, address: str | None = "auto", *, threads: int | None = None, max_retries: int = 2
    ) -> None:
        self.address = address
        self.workers, self.threads = 0, split_cpus(DEFAULT_THREADS, None, threads)[1]
        self.max_retries = max_retries

    def run(self, jobs: Sequence[Job], on_done: OnDone) -> None:
        ray = import_ray()
        started = not ray.is_initialized()
        if started:
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ConfigError(
                    f"could not start or reach Ray at {self.address!r}: {str(exc).rstrip('.')}. Start a "
                    "cluster with `ray start --head`, or pass --ray-address local for a Ray on this machine"
                ) from None
        pending: list[Any] = []
        try:
            self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)) // self.threads)
            remote = ray.remote(num_cpus=self.threads, max_retries=self.max_retries)(execute)
            stored: dict[InputSpec, Any] = {}
            refs: dict[Any, Job] = {}
            for job in jobs:
                if job.spec not in stored:
                    stored[job.spec] = ray.put(load_inputs(job.spec, job.threads))
                refs[remote.remote(replace(job, work_dir=None), stored[job.spec])] = job
            pending = list(refs)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    try:
                        outcome = ray.get(ref)
                    except Exception as exc:  # a task or its worker failed beyond its retries
                        outcome = Outcome(error=f"ray task failed: {exc!r}")
                    on_done(refs[ref], outcome)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        finally:
            if started:
                ray.shutdown()


def import_ray() -> Any:
    """The `ray` module, or a ConfigError that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            f"running on Ray needs the ray extra: pip install 'activethief[ray]' ({exc})"
        ) from None
    return ray


def make_executor(
    *, workers: int | None = None, threads: int | None = None, ray_address: str | None = None
) -> Executor:
    """The executor CLI options ask for: Ray given an address, else a process pool when the CPU split
    (`split_cpus`) gives more than one worker, else serial."""
    if ray_address:
        if workers is not None:
            raise ConfigError(
                "--workers applies to the local process pool; with --ray-address Ray schedules tasks"
            )
        import_ray()
        return RayExecutor(ray_address, threads=threads)
    workers, threads = split_cpus(available_cpus(), workers, threads)
    if workers > 1:
        return LocalPoolExecutor(workers, threads=threads)
    return SerialExecutor(threads=threads)
