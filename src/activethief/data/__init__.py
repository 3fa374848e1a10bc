"""Datasets and pools: registry by name, IDX and CIFAR readers, sources, checksums, a fast array cache, and
the pools the loop reads per batch (datasets, image folders, .npy/.npz files; uint8 or memory-mapped)."""

from activethief.data.idx import read_idx, read_idx_bytes
from activethief.data.pools import Pool, PoolSummary, open_pool
from activethief.data.registry import DATASETS, ArchiveSpec, BuiltSpec, DatasetSpec, Shape, Spec, get_spec
from activethief.data.store import FetchReport, data_dir, fetch, is_cached, load, load_uint8

__all__ = [
    "DATASETS",
    "ArchiveSpec",
    "BuiltSpec",
    "DatasetSpec",
    "FetchReport",
    "Pool",
    "PoolSummary",
    "Shape",
    "Spec",
    "data_dir",
    "fetch",
    "get_spec",
    "is_cached",
    "load",
    "load_uint8",
    "open_pool",
    "read_idx",
    "read_idx_bytes",
]
