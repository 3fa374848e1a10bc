"""Atomic file writes: a temp file beside the target, then `os.replace`, so a crash leaves old or new.

The one helper every module that persists something uses (checkpoints, ledgers' neighbours, models,
dataset caches, experiment configs, snapshots).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block succeeds it replaces `path` in one rename.

    On an exception the temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path | str, text: str) -> None:
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def copy_atomic(source: Path | str, dest: Path | str) -> None:
    """Copy the file `source` to `dest` atomically."""
    with atomic_path(dest) as tmp:
        shutil.copyfile(source, tmp)
