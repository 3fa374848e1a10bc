"""activethief: query-efficient model extraction (ActiveThief) and transfer attacks."""

from activethief.errors import ActiveThiefError, BudgetExceededError
from activethief.oracle import CallableOracle, ModelOracle, Oracle, OutputMode
from activethief.steal import RoundEvent, RoundRecord, StealConfig, StealResult, steal

__version__ = "0.1.0"

__all__ = [
    "ActiveThiefError",
    "BudgetExceededError",
    "CallableOracle",
    "ModelOracle",
    "Oracle",
    "OutputMode",
    "RoundEvent",
    "RoundRecord",
    "StealConfig",
    "StealResult",
    "__version__",
    "steal",
]
