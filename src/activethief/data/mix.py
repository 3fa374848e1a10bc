"""Mixed pools, `mix:SPEC@COUNT+SPEC@COUNT[:SEED]`: a share of one pool plus a share of another.

The thief's realistic situation is a little data like the target's and a lot that is not (ActiveThief,
Pal et al., AAAI 2020, steals with public data of other distributions). `mix:mnist@1000+fashion-mnist@59000`
takes 1,000 random MNIST training images and 59,000 random FashionMNIST ones and shuffles them together.
Each part is any pool spec `open_pool` knows (a dataset, `noise:...`, `sklearn-digits`, a folder, a file;
not containing `+`), COUNT is a number of images or `all`, and SEED (default 0) draws the subsets and the
order. The mix is lazy: it keeps an index map (part, row) per image and gathers a batch from the parts
when read, so pool index i is the same image every time the same spec is opened (ledgers and resumed
runs rely on that) and a mix of memory-mapped datasets costs only its index map.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from activethief.data.lazy import LazyImages
from activethief.data.pools import Pool, PoolSource, PoolSummary
from activethief.data.registry import Shape
from activethief.errors import DataError

_VERSION = 1
_USAGE = "write mix:SPEC@COUNT+SPEC@COUNT[:SEED], e.g. mix:mnist@1000+fashion-mnist@59000 (COUNT may be all)"


@dataclass(frozen=True)
class MixPart:
    """One part of a mix: a pool spec and how many of its images to take (None: all of them)."""

    spec: str
    count: int | None


def parse_mix(source: str) -> tuple[list[MixPart], int]:
    """`mix:A@N+B@M[:SEED]` as its parts and seed, or a DataError saying what a mix spec looks like."""
    body = source.removeprefix("mix:")
    if not source.startswith("mix:") or not body:
        raise DataError(f"bad mix pool {source!r}: {_USAGE}")
    texts = body.split("+")
    head, at, tail = texts[-1].rpartition("@")
    count_text, _, seed_text = tail.partition(":")
    texts[-1] = f"{head}{at}{count_text}"
    seed = _number(seed_text, source, "SEED", minimum=0) if seed_text else 0
    parts = []
    for text in texts:
        spec, at, count = text.rpartition("@")
        if not at or not spec:
            raise DataError(f"bad mix pool {source!r}: part {text!r} has no @COUNT; {_USAGE}")
        parts.append(MixPart(spec, None if count == "all" else _number(count, source, "COUNT", minimum=1)))
    return parts, seed


def _number(text: str, source: str, name: str, *, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise DataError(f"bad mix pool {source!r}: {name} must be an integer >= {minimum}, got {text!r}")
    return value


class MixMaker:
    """Image i of a mix: row `rows[i]` of part `parts[i]`, gathered in the parts' stored form."""

    def __init__(self, pools: Sequence[Pool], part_of: np.ndarray, row_of: np.ndarray) -> None:
        self.pools, self.part_of, self.row_of = list(pools), part_of, row_of
        self.count, self.shape = len(part_of), pools[0].shape
        all_uint8 = all(p.storage.dtype == np.uint8 for p in pools)
        self._dtype = np.dtype(np.uint8 if all_uint8 else np.float32)
        digest = hashlib.sha256(f"mix/{_VERSION}".encode())
        for pool in pools:
            digest.update(pool.fingerprint.encode())
        digest.update(part_of.tobytes())
        digest.update(row_of.tobytes())
        self._identity = f"mix/{_VERSION}:{digest.hexdigest()}"

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._dtype

    @property
    def identity(self) -> str:
        return self._identity

    @property
    def held_bytes(self) -> int:
        return int(self.part_of.nbytes + self.row_of.nbytes)

    def make(self, indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices), *self.shape), dtype=self._dtype)
        parts, rows = self.part_of[indices], self.row_of[indices]
        for number, pool in enumerate(self.pools):
            where = np.flatnonzero(parts == number)
            if where.size:
                wanted = rows[where]
                out[where] = pool.stored(wanted) if self._dtype == np.uint8 else pool[wanted]
        return out


def mix_pool(pools: Sequence[Pool], counts: Sequence[int | None], seed: int, source: str) -> Pool:
    """The mix of `counts[j]` random images of each `pools[j]` (all for None), shuffled; see the module."""
    part_of, row_of = [], []
    for number, (pool, count) in enumerate(zip(pools, counts, strict=True)):
        take = len(pool) if count is None else count
        if take > len(pool):
            raise DataError(
                f"mix pool {source!r}: part {pool.summary.source} holds {len(pool)} images, "
                f"{take} were asked for"
            )
        rng = np.random.default_rng(np.random.SeedSequence([seed, number]))
        chosen = np.arange(take) if take == len(pool) else np.sort(rng.choice(len(pool), take, replace=False))
        part_of.append(np.full(take, number, dtype=np.int16))
        row_of.append(chosen.astype(np.int64))
    order = np.random.default_rng(np.random.SeedSequence([seed, len(pools), 1])).permutation(
        sum(len(p) for p in part_of)
    )
    maker = MixMaker(pools, np.concatenate(part_of)[order], np.concatenate(row_of)[order])
    kinds = ", ".join(sorted({p.summary.kind for p in pools}))
    summary = PoolSummary(source, "mix", f"{maker.dtype}, gathered per batch from {kinds}", maker.count)
    return Pool(LazyImages(maker), "NCHW", summary)


@dataclass(frozen=True)
class MixReader:
    """`mix:SPEC@COUNT+SPEC@COUNT[:SEED]`: each part opened by `open_pool` in the target's shape."""

    split: str = "train"
    root: Path | str | None = None
    cache: bool = True
    kind: str = "mix"

    def accepts(self, source: PoolSource) -> bool:
        return isinstance(source, str) and source.startswith("mix:")

    def open(self, source: PoolSource, shape: Shape | None) -> Pool:
        from activethief.data.pools import open_pool

        parts, seed = parse_mix(str(source))
        pools: list[Pool] = []
        for part in parts:
            try:
                pool = open_pool(part.spec, shape, split=self.split, root=self.root, cache=self.cache)
            except DataError as exc:
                raise DataError(f"mix pool {source!r}, part {part.spec!r}: {exc}") from None
            if pools and pool.shape != pools[0].shape:
                raise DataError(
                    f"mix pool {source!r}: part {part.spec!r} holds images of shape {pool.shape}, "
                    f"part {parts[0].spec!r} of {pools[0].shape}; give the target's shape"
                )
            shape = shape or pool.shape
            pools.append(pool)
        canonical = "+".join(f"{p.spec}@{'all' if p.count is None else p.count}" for p in parts)
        return mix_pool(pools, [p.count for p in parts], seed, f"mix:{canonical}:{seed}")
