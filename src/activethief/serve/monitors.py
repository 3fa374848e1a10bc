"""PRADA per key (Juuti et al., IEEE EuroS&P 2019): one detector per key the keys file watches
(`prada = DELTA`), fed every image the key is answered (billed, not replayed), with the class answered.

When a key is first flagged: one warning naming the key's *name* (never its secret), the counter
`activethief_prada_flags_total`, and the gauges `activethief_prada_flagged` / `activethief_prada_statistic`
(the latest Shapiro-Wilk W) show it; with `prada_refuse = true` its later requests get a 403. Detectors
live in the server's memory: a restart starts every key's watch afresh.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from activethief.oracle.prada import PradaDetector
from activethief.serve.keys import KeyPolicy, KeyRing
from activethief.serve.metrics import Metrics

log = logging.getLogger("activethief.serve")


class PradaRefused(Exception):
    """A flagged key's request, refused (the service turns it into a 403)."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class PradaWatch:
    """The detectors of every watched key, with the metrics and the log line of a flag."""

    def __init__(self, keys: KeyRing, metrics: Metrics) -> None:
        self.metrics = metrics
        self.detectors = {p.name: PradaDetector(p.prada) for p in keys if p.prada is not None}
        self._locks = {name: threading.Lock() for name in self.detectors}

    def check(self, policy: KeyPolicy, count: int) -> None:
        """Refuse (PradaRefused) a request of `count` images from a flagged key with `prada_refuse`."""
        detector = self.detectors.get(policy.name)
        if detector is None or not policy.prada_refuse or not detector.flagged:
            return
        self.metrics.count("activethief_images_refused_total", count, key=policy.name, reason="prada")
        raise PradaRefused(
            f"key {policy.name!r} was flagged as a likely model-extraction client (PRADA, after "
            f"{detector.flagged_at} queries) and may not query this model any more; contact the service's "
            "owner"
        )

    def observe(self, policy: KeyPolicy, images: np.ndarray, classes: np.ndarray) -> None:
        """Feed the key's detector the images it was just answered, in order; log and count a new flag."""
        detector = self.detectors.get(policy.name)
        if detector is None or not len(images):
            return
        with self._locks[policy.name]:  # one key's requests observed one at a time, in arrival order
            was = detector.flagged
            detector.observe(images, classes)
        if detector.flagged and not was:
            self.metrics.count("activethief_prada_flags_total", key=policy.name)
            refusing = "; its requests are refused from now on" if policy.prada_refuse else ""
            log.warning(
                "key %s: flagged by PRADA after %d queries (Shapiro-Wilk W %.4f < delta %g)%s",
                policy.name,
                detector.flagged_at or 0,
                detector.statistic or 0.0,
                detector.delta,
                refusing,
            )

    def gauges(self) -> dict[str, dict[str, float]]:
        """Per watched key: flagged (0 or 1) and the latest W (keys not yet tested are left out)."""
        return {
            "activethief_prada_flagged": {n: float(d.flagged) for n, d in self.detectors.items()},
            "activethief_prada_statistic": {
                n: d.statistic for n, d in self.detectors.items() if d.statistic is not None
            },
        }
