"""Active-learning selection: scorers, selectors and their compositions, named strategies and seeding.

Everything works on arrays (what a strategy declares it needs of the pool: probabilities, features, the
model) and pool indices; nothing here trains, queries or touches files.
"""

from activethief.selection.base import IndexArray, Need, PoolView, Strategy
from activethief.selection.compose import DEFAULT_NARROW_FACTOR, Composed, Narrow
from activethief.selection.kcenter import DEFAULT_CHUNK_SIZE, KCenter, kcenter_greedy, min_sq_distances
from activethief.selection.registry import DEFAULT_KCENTER_FACTOR, STRATEGIES, make_strategy
from activethief.selection.scorers import Entropy, LeastConfidence, Margin, Scorer, entropy, mean_entropy
from activethief.selection.seeding import (
    SEEDING_FORMS,
    KMeansSeeder,
    PCAKMeansSeeder,
    RandomSeeder,
    Seeder,
    make_seeder,
)
from activethief.selection.selectors import ClassBalanced, RandomChoice, TopScore, equal_shares

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_KCENTER_FACTOR",
    "DEFAULT_NARROW_FACTOR",
    "SEEDING_FORMS",
    "STRATEGIES",
    "ClassBalanced",
    "Composed",
    "Entropy",
    "IndexArray",
    "KCenter",
    "KMeansSeeder",
    "LeastConfidence",
    "Margin",
    "Narrow",
    "Need",
    "PCAKMeansSeeder",
    "PoolView",
    "RandomChoice",
    "RandomSeeder",
    "Scorer",
    "Seeder",
    "Strategy",
    "TopScore",
    "entropy",
    "equal_shares",
    "kcenter_greedy",
    "make_seeder",
    "make_strategy",
    "mean_entropy",
    "min_sq_distances",
]
