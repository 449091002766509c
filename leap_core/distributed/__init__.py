"""Class-sharded training across processes with ``torch.distributed``.

Each rank owns a contiguous slice of the classes (:class:`ClassShard`): its rows of the
margin head's weight and, for those classes, the feature cloud's centres, angle memories and
statistics. Embeddings and labels are gathered from every rank, each rank computes the logits
of its own classes, and the softmax cross-entropy over all classes is assembled from
all-reduced maxima and sums (:class:`ShardedLEAPLoss`), as insightface's Partial FC does for
the plain margin head.
"""

from leap_core.distributed.collectives import gather_batch, gather_labels
from leap_core.distributed.shard import ClassShard
from leap_core.distributed.sharded_cloud import ShardedFeatureCloud
from leap_core.distributed.sharded_loss import ShardedLEAPLoss

__all__ = ["ClassShard", "ShardedFeatureCloud", "ShardedLEAPLoss", "gather_batch", "gather_labels"]
