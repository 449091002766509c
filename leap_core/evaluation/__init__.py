"""Evaluation of identity embeddings: re-ID retrieval, face verification and identification,
head/tail breakdowns, angular diagnostics and plots.

All rates are fractions in ``[0, 1]``. The trainer talks to :class:`ReidEvaluator` and
:class:`FaceVerificationEvaluator` through the :class:`Evaluator` protocol; the functions
below are the building blocks, usable on their own.
"""

from leap_core.evaluation.angular import AngularStats, class_angular_stats
from leap_core.evaluation.breakdown import (
    head_query_mask,
    head_tail_identification,
    head_tail_reid,
)
from leap_core.evaluation.distance import cosine_distance, iter_cosine_distance
from leap_core.evaluation.evaluators import Evaluator, FaceVerificationEvaluator, ReidEvaluator
from leap_core.evaluation.face import (
    IdentificationResult,
    KFoldAccuracy,
    OperatingPoint,
    identification_rank1,
    kfold_accuracy,
    pair_scores,
    read_template_media,
    read_template_pairs,
    roc_curve,
    template_features,
    tpr_at_fpr,
)
from leap_core.evaluation.reid import (
    RankResult,
    evaluate_rank,
    rank_distance_blocks,
    rank_queries,
    rank_queries_from_features,
)
from leap_core.evaluation.rerank import re_ranking
from leap_core.evaluation.rerank_sparse import iter_re_ranking, re_ranking_from_features

__all__ = [
    "AngularStats",
    "Evaluator",
    "FaceVerificationEvaluator",
    "IdentificationResult",
    "KFoldAccuracy",
    "OperatingPoint",
    "RankResult",
    "ReidEvaluator",
    "class_angular_stats",
    "cosine_distance",
    "evaluate_rank",
    "head_query_mask",
    "head_tail_identification",
    "head_tail_reid",
    "identification_rank1",
    "iter_cosine_distance",
    "iter_re_ranking",
    "kfold_accuracy",
    "pair_scores",
    "rank_distance_blocks",
    "rank_queries",
    "rank_queries_from_features",
    "re_ranking",
    "re_ranking_from_features",
    "read_template_media",
    "read_template_pairs",
    "roc_curve",
    "template_features",
    "tpr_at_fpr",
]
