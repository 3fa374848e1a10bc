"""Attacks on the substitute (FGSM, PGD, MI-FGSM; L∞) and their transfer to the target through the oracle."""

from activethief.attacks.base import LEAST_LIKELY, Attack
from activethief.attacks.fgsm import FGSM
from activethief.attacks.mifgsm import MIFGSM
from activethief.attacks.pgd import PGD
from activethief.attacks.plot import plot_examples
from activethief.attacks.registry import ATTACKS, make_attack, parse_target_class
from activethief.attacks.transfer import TransferExamples, TransferResult, evaluate_transfer, success_rates

__all__ = [
    "ATTACKS",
    "FGSM",
    "LEAST_LIKELY",
    "MIFGSM",
    "PGD",
    "Attack",
    "TransferExamples",
    "TransferResult",
    "evaluate_transfer",
    "make_attack",
    "parse_target_class",
    "plot_examples",
    "success_rates",
]
