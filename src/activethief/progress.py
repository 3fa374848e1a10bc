"""The one progress helper: a tqdm bar when enabled, nothing at all when not (quiet runs, tests)."""

from __future__ import annotations

from typing import Any


class Progress:
    """A progress bar over `total` units (queries, cost-weighted cells); every method is a no-op when off.

    Args:
        enabled: False for quiet runs: no bar is created and tqdm is not imported.
        total: The bar's total.
        desc: Its label.
        **options: Further tqdm options (`unit`, `bar_format`, `leave`, ...).
    """

    def __init__(self, enabled: bool, total: float, desc: str, **options: Any) -> None:
        self.bar: Any = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, **options)

    def set(self, value: float, **postfix: object) -> None:
        """Move the bar to `value` (capped at the total) and show `postfix`."""
        if self.bar is not None:
            self.bar.n = min(value, self.bar.total)
            self.bar.set_postfix(postfix, refresh=True)

    def advance(self, amount: float, desc: str | None = None) -> None:
        """Add `amount` to the bar, optionally relabelling it."""
        if self.bar is not None:
            if desc is not None:
                self.bar.set_description(desc, refresh=False)
            self.bar.update(amount)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
