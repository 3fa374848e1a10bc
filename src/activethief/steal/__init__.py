"""The steal loop: settings (`config`), what it produces (`records`), its folder (`rundir`), the rounds
(`loop`) and the CLI command (`command`)."""

from activethief.steal.config import DEFAULT_FIT, StealConfig
from activethief.steal.loop import steal
from activethief.steal.records import RoundEvent, RoundRecord, StealResult

__all__ = ["DEFAULT_FIT", "RoundEvent", "RoundRecord", "StealConfig", "StealResult", "steal"]
