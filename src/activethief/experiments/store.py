"""Results that survive interruptions: whole cells appended to one JSONL file, and the run's config.

`results/cells.jsonl` holds one row per round of every finished cell, written in one append with flush
and fsync once the cell is done. Every row carries its settings, its cell's identity, an `attempt` id and
the cell's row count, so a reader keeps only complete cells of the settings it asks for: a torn last line
from a crash, or a cell cut short, is ignored and simply run again. `results/config.json` records the
grid, the package version, the targets and every invocation.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from activethief.errors import ConfigError
from activethief.files import write_text_atomic

CELLS = "cells.jsonl"
CONFIG = "config.json"

# Fields that describe how and when a row was computed rather than what it says; rows from different
# executors agree on everything else.
TIMING_FIELDS: frozenset[str] = frozenset(
    {
        "seconds_train",
        "seconds_select",
        "seconds_query",
        "seconds_attack",
        "cell_seconds",
        "finished_at",
        "attempt",
        "threads",
        "executor",
        "pid",
    }
)


def append_rows(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Append whole lines in one write, then flush and fsync; a torn previous tail is closed off first."""
    payload = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell() > 0:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                payload = b"\n" + payload  # the torn line stays unreadable on its own and is skipped
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Every parseable row of a JSONL file; torn or corrupt lines are skipped."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def complete_cells(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(settings_id, cell_id) -> the rows of its first complete attempt, sorted by round."""
    attempts: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if {"attempt", "n_rows", "settings_id", "cell_id", "share_key", "size"} <= row.keys():
            attempts.setdefault(str(row["attempt"]), []).append(row)
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for group in attempts.values():
        if len(group) != group[0]["n_rows"]:
            continue
        key = (str(group[0]["settings_id"]), str(group[0]["cell_id"]))
        cells.setdefault(key, sorted(group, key=lambda r: int(r.get("round", 0))))
    return cells


class Results:
    """The finished cells of a results folder, looked up the way experiment views need them.

    Args:
        cells: (settings_id, cell_id) -> rows, as `complete_cells` returns.
        settings: dataset -> the settings (with `settings_id`) whose rows count.
        targets: dataset -> what is known about its target (path, test accuracy).
    """

    def __init__(
        self,
        cells: dict[tuple[str, str], list[dict[str, Any]]],
        settings: dict[str, dict[str, Any]],
        targets: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.settings = settings
        self.targets = targets or {}
        self._by_share: dict[tuple[str, str], list[list[dict[str, Any]]]] = {}
        for (settings_id, _), rows in cells.items():
            self._by_share.setdefault((settings_id, str(rows[0]["share_key"])), []).append(rows)
        for runs in self._by_share.values():
            runs.sort(key=lambda rows: -int(rows[0]["size"]))

    @classmethod
    def load(cls, folder: Path | str) -> Results:
        """Read `folder/cells.jsonl` with the settings and targets recorded in `folder/config.json`."""
        folder = Path(folder)
        config = read_config(folder)
        if config is None:
            raise ConfigError(
                f"{folder} holds no {CONFIG}; run `activethief experiment ... --out {folder}` first"
            )
        return cls(
            complete_cells(read_rows(folder / CELLS)), config.get("settings", {}), config.get("targets", {})
        )

    def settings_id(self, dataset: str) -> str | None:
        settings = self.settings.get(dataset)
        return None if settings is None else str(settings["settings_id"])

    def covers(self, settings_id: str, share_key: str, size: int) -> bool:
        """Whether a finished cell with these settings and share key is at least `size` long."""
        runs = self._by_share.get((settings_id, share_key), [])
        return bool(runs) and int(runs[0][0]["size"]) >= size

    def rows_for(self, task: Any) -> list[dict[str, Any]] | None:
        """The rows of the longest finished run covering `task` (a `Task`), or None if there is none."""
        settings_id = self.settings_id(task.dataset)
        if settings_id is None or not self.covers(settings_id, task.share_key, task.size):
            return None
        return self._by_share[(settings_id, task.share_key)][0]

    def all_rows(self) -> list[dict[str, Any]]:
        """Every row of the current settings (one longest run per share key)."""
        current = {str(s["settings_id"]) for s in self.settings.values()}
        return [row for (sid, _), runs in self._by_share.items() if sid in current for row in runs[0]]


def read_config(folder: Path) -> dict[str, Any] | None:
    """`folder/config.json`, or None when there is none."""
    path = folder / CONFIG
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); restore it or remove it") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"{path} does not hold a JSON object")
    return value


def write_config(folder: Path, config: dict[str, Any]) -> None:
    """Write `folder/config.json` atomically (temp file, then rename)."""
    write_text_atomic(folder / CONFIG, json.dumps(config, indent=2, sort_keys=True) + "\n")
