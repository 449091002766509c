"""Class-sharded training across processes with ``torch.distributed``.

Each rank owns a contiguous slice of the classes (:class:`ClassShard`): its rows of the
margin head's weight and, for those classes, the feature cloud's centres, angle memories and
statistics. Embeddings and labels are gathered from every rank, each rank computes the logits
of its own classes, and the softmax cross-entropy over all classes is assembled from
all-reduced maxima and sums, as insightface's Partial FC does for the plain margin head. The
criterion, the cloud and the loss's autograd node take a shard and are the same objects at
every world size; a one-process run is one shard of all classes whose collectives return
their input.

``shard`` (the slice and its collectives), ``collectives`` (``torch.distributed`` with the
gradients training needs), ``gather`` (rank 0's copy of sharded state), ``launch`` (starting
the ranks of one run on one machine).
"""

from leap_core.distributed.shard import ClassShard

__all__ = ["ClassShard"]
