"""Datasets: registry by name, IDX reader, sources, SHA-256 checks and a fast array cache."""

from activethief.data.idx import read_idx, read_idx_bytes
from activethief.data.registry import DATASETS, DatasetSpec, get_spec
from activethief.data.store import FetchReport, data_dir, fetch, is_cached, load

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "FetchReport",
    "data_dir",
    "fetch",
    "get_spec",
    "is_cached",
    "load",
    "read_idx",
    "read_idx_bytes",
]
