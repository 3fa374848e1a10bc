"""Train a substitute on a target's answers and predict with it.

`fit` trains on answered images (soft or hard labels), optionally semi-supervised over the unanswered
pool (`SemiConfig`); `predict_*` stream a pool through a model in bounded memory.
"""

from activethief.training.augment import random_shift
from activethief.training.fit import FitConfig, FitResult, fit, soft_cross_entropy, to_soft_targets
from activethief.training.predict import (
    ArrayLike,
    Outputs,
    accuracy,
    channels_last,
    network_batch,
    predict_logits,
    predict_outputs,
    predict_proba,
)
from activethief.training.semisup import SEMI_METHODS, SemiConfig, parse_semi

__all__ = [
    "SEMI_METHODS",
    "ArrayLike",
    "FitConfig",
    "FitResult",
    "Outputs",
    "SemiConfig",
    "accuracy",
    "channels_last",
    "fit",
    "network_batch",
    "parse_semi",
    "predict_logits",
    "predict_outputs",
    "predict_proba",
    "random_shift",
    "soft_cross_entropy",
    "to_soft_targets",
]
