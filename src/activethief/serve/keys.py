"""API keys and their policies (defence, output mode, budget, rate limit, PRADA), read from a TOML keys file.

A keys file has one table per key, named by the key's *name* (what logs and metrics show)::

    [defaults]              # optional: applies to every key unless the key says otherwise
    mode = "probs"

    [keys.alice]
    key = "at-3f9c1b7e5d2a48c6"   # the secret a client sends as `Authorization: Bearer ...`
    mode = "topk:3"               # probs | topk:K | label | round:D
    budget = 20000                # images this key may ever be answered (omit: unlimited)
    rate = 200                    # images per second, token bucket (omit: unlimited)
    burst = 1000                  # bucket size in images (default: max(rate, max images per request))
    defence = "reverse-sigmoid:0.7"  # answer policy applied before `mode` (activethief.oracle.parse_defence)
    prada = 0.95                  # watch this key with PRADA at delta 0.95 (omit: not watched)
    prada_refuse = true           # once PRADA flags the key, refuse its requests with 403 (default false)

    [keys.ops]
    key = "at-9a1f..."            # a monitoring key: may read /metrics (every key's usage)
    admin = true

    [keys.bob]
    key_sha256 = "9b74c9897bac770ffc029102a200c5de..."  # or store only the SHA-256 of the secret

Accounting (budget used, answered request ids) is kept per key *name*: rotating a key's secret keeps
its usage, renaming the key starts a new account.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from activethief.errors import ConfigError
from activethief.oracle.defences import Defence, NoDefence, parse_defence
from activethief.oracle.modes import OutputMode

MIN_KEY_LENGTH = 12
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_FIELDS = {
    "key",
    "key_sha256",
    "mode",
    "budget",
    "rate",
    "burst",
    "admin",
    "defence",
    "prada",
    "prada_refuse",
}
_DEFAULT_FIELDS = {"mode", "budget", "rate", "burst", "defence", "prada", "prada_refuse"}


def hash_key(secret: str) -> str:
    """The SHA-256 hex digest under which a secret key is looked up (and may be stored)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class KeyPolicy:
    """What one API key may do. `budget`, `rate` and `burst` are None when unlimited; `admin` keys may
    also read `/metrics`, which shows every key's name and usage. `defence` is applied to the key's
    answers before `mode`; `prada` is the PRADA delta watching the key (None: not watched), and
    `prada_refuse` refuses a flagged key's requests (403)."""

    name: str
    key_sha256: str
    mode: OutputMode
    budget: int | None = None
    rate: float | None = None
    burst: float | None = None
    admin: bool = False
    defence: Defence = field(default_factory=NoDefence)
    prada: float | None = None
    prada_refuse: bool = False

    def bucket_size(self, max_batch: int) -> float | None:
        """Token-bucket capacity in images (None without a rate limit)."""
        if self.rate is None:
            return None
        return self.burst if self.burst is not None else max(self.rate, float(max_batch))

    def __repr__(self) -> str:  # never show the key digest in logs or tracebacks
        return (
            f"KeyPolicy(name={self.name!r}, mode={str(self.mode)!r}, budget={self.budget}, "
            f"rate={self.rate}, burst={self.burst}, admin={self.admin}, defence={str(self.defence)!r}, "
            f"prada={self.prada}, prada_refuse={self.prada_refuse})"
        )


class KeyRing:
    """The keys a server accepts, looked up by the SHA-256 of the presented secret."""

    def __init__(self, policies: list[KeyPolicy]) -> None:
        self._by_hash: dict[str, KeyPolicy] = {}
        self._by_name: dict[str, KeyPolicy] = {}
        for policy in policies:
            if policy.name in self._by_name:
                raise ConfigError(f"key name {policy.name!r} appears twice")
            if policy.key_sha256 in self._by_hash:
                other = self._by_hash[policy.key_sha256].name
                raise ConfigError(
                    f"keys {other!r} and {policy.name!r} have the same secret; give each its own"
                )
            self._by_hash[policy.key_sha256] = policy
            self._by_name[policy.name] = policy

    def identify(self, secret: str) -> KeyPolicy | None:
        """The policy of the key whose secret this is, or None."""
        return self._by_hash.get(hash_key(secret))

    def __getitem__(self, name: str) -> KeyPolicy:
        return self._by_name[name]

    def __iter__(self) -> Iterator[KeyPolicy]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    @property
    def names(self) -> list[str]:
        return list(self._by_name)


def load_keys(path: Path | str) -> KeyRing:
    """Read a keys file (TOML, see the module docstring); a ConfigError says what is wrong and where."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"keys file {path} does not exist; see docs/serve.md for its format")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        # The decoder's message quotes positions, never values, so it cannot leak a key.
        raise ConfigError(f"keys file {path} is not valid TOML: {exc}") from None
    return parse_keys(doc, source=str(path))


def parse_keys(doc: Mapping[str, Any], *, source: str = "keys file") -> KeyRing:
    """A KeyRing from an already parsed keys document (a dict shaped like the TOML file)."""
    unknown = set(doc) - {"defaults", "keys"}
    if unknown:
        raise ConfigError(
            f"{source}: unknown top-level entries {sorted(unknown)}; expected [defaults] and [keys.NAME]"
        )
    defaults = doc.get("defaults", {})
    if not isinstance(defaults, Mapping):
        raise ConfigError(f"{source}: [defaults] must be a table")
    bad = set(defaults) - _DEFAULT_FIELDS
    if bad:
        raise ConfigError(
            f"{source}: unknown fields {sorted(bad)} in [defaults]; allowed: {sorted(_DEFAULT_FIELDS)}"
        )
    keys = doc.get("keys", {})
    if not isinstance(keys, Mapping) or not keys:
        raise ConfigError(f"{source}: no keys; add at least one [keys.NAME] table with a `key`")
    policies = []
    for name, entry in keys.items():
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{source}: keys.{name} must be a table")
        policies.append(_policy(name, {**defaults, **entry}, f"{source}: keys.{name}"))
    return KeyRing(policies)


def _policy(name: str, entry: Mapping[str, Any], where: str) -> KeyPolicy:
    if not _NAME.match(name):
        raise ConfigError(f"{where}: a key name must be 1-64 letters, digits, '_', '.' or '-'")
    bad = set(entry) - _FIELDS
    if bad:
        raise ConfigError(f"{where}: unknown fields {sorted(bad)}; allowed: {sorted(_FIELDS)}")
    secret, digest = entry.get("key"), entry.get("key_sha256")
    if (secret is None) == (digest is None):
        raise ConfigError(f"{where}: give exactly one of `key` (the secret) or `key_sha256` (its SHA-256)")
    if secret is not None:
        if not isinstance(secret, str) or len(secret) < MIN_KEY_LENGTH or secret != secret.strip():
            raise ConfigError(
                f"{where}: `key` must be a string of at least {MIN_KEY_LENGTH} characters without "
                'surrounding spaces (e.g. python -c "import secrets; print(secrets.token_urlsafe(24))")'
            )
        digest = hash_key(secret)
    elif not isinstance(digest, str) or not _HEX64.match(digest.lower()):
        raise ConfigError(f"{where}: `key_sha256` must be 64 hexadecimal digits")
    mode = entry.get("mode", "probs")
    if not isinstance(mode, str):
        raise ConfigError(f'{where}: `mode` must be a string such as "probs" or "topk:3"')
    try:
        parsed_mode = OutputMode.parse(mode)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    admin = entry.get("admin", False)
    if not isinstance(admin, bool):
        raise ConfigError(f"{where}: `admin` must be true or false")
    return KeyPolicy(
        **_watch(entry, where),
        name=name,
        key_sha256=digest.lower(),
        mode=parsed_mode,
        budget=_number(entry, "budget", where, integer=True),
        rate=_number(entry, "rate", where),
        burst=_number(entry, "burst", where),
        admin=admin,
    )


def _watch(entry: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The key's defence and PRADA settings, checked."""
    defence = entry.get("defence", "none")
    if not isinstance(defence, str):
        raise ConfigError(f'{where}: `defence` must be a string such as "reverse-sigmoid:0.7" or "none"')
    try:
        parsed = parse_defence(defence)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    delta = entry.get("prada")
    if delta is not None and (
        isinstance(delta, bool) or not isinstance(delta, int | float) or not 0 < delta <= 1
    ):
        raise ConfigError(f"{where}: `prada` must be PRADA's delta, a number in (0, 1] such as 0.95")
    refuse = entry.get("prada_refuse", False)
    if not isinstance(refuse, bool):
        raise ConfigError(f"{where}: `prada_refuse` must be true or false")
    if refuse and delta is None:
        raise ConfigError(f"{where}: `prada_refuse = true` needs `prada = DELTA` (the detector's threshold)")
    return {"defence": parsed, "prada": None if delta is None else float(delta), "prada_refuse": refuse}


def _number(entry: Mapping[str, Any], field: str, where: str, *, integer: bool = False) -> Any:
    value = entry.get(field)
    if value is None:
        return None
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < 0 or value != value:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{where}: `{field}` must be {kind} >= 0 (omit it for no limit)")
    if field == "rate" and value == 0:
        raise ConfigError(f"{where}: `rate` must be > 0 (omit it for no rate limit)")
    if field == "burst" and value < 1:
        raise ConfigError(f"{where}: `burst` must be >= 1 image")
    return int(value) if integer else float(value)
