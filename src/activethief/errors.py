"""Errors a user can act on: every failure we expect is one of these, with a message that says what to do."""


class ActiveThiefError(Exception):
    """Base class; the CLI prints these as one clean message instead of a traceback."""


class DataError(ActiveThiefError):
    """A dataset is unknown, missing, corrupt or could not be fetched."""


class ModelError(ActiveThiefError):
    """A model file or architecture name is invalid."""


class OracleError(ActiveThiefError):
    """The black box could not answer (bad input, unreachable, inconsistent ledger)."""


class BudgetExceededError(OracleError):
    """A query would spend more than the oracle's budget."""

    def __init__(self, used: int, asked: int, budget: int) -> None:
        self.used, self.asked, self.budget = used, asked, budget
        super().__init__(
            f"query budget exceeded: {used} of {budget} queries used, {asked} more asked "
            f"({budget - used} left). Raise the budget or ask for fewer points."
        )


class ConfigError(ActiveThiefError):
    """An option value (strategy name, stopping rule, output mode, ...) is invalid."""
