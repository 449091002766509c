"""The shared pipeline of the normalised-softmax heads (spec §2 and §6).

A head turns embeddings into scaled logits: it normalises features and class weights, takes
their cosines, lets each sample's angular offsets move its angles (the feature cloud, eqs.
7-8), lets the subclass place its margin on the target logit, and scales. Subclasses
override one hook, :meth:`MarginHead.target_cosine`. The margin is one number, or one per
class (:meth:`MarginHead.set_class_margins`, LDAM's margins that grow as classes shrink).

A head has two entry points: calling it gives the logits (evaluation, inspection, the
reference the tests differentiate by autograd); :meth:`MarginHead.loss` is the training
step's cross-entropy of those same logits, formed with its gradient in one autograd node
(:mod:`leap_core.heads.fused_loss`) for the head's shard of the classes.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from leap_core import checks
from leap_core.distributed.shard import ClassShard
from leap_core.heads.angles import NORM_EPS, angular_shift, compute_dtype, shifted_cosine
from leap_core.heads.class_sample import SampledClasses
from leap_core.heads.cloud_rows import CloudRows
from leap_core.heads.fused_loss import margin_softmax_cross_entropy
from leap_core.heads.loss_terms import PLAIN, LossTerms
from leap_core.heads.workspace import Workspace


class _CosineToWeights(torch.autograd.Function):
    """``cos[b, j] = f[b]·W[j] / |W[j]|`` for unit features ``f`` and raw class weights.

    Normalising ``W`` as a tensor (``F.normalize``) makes a ``(C, D)`` copy forwards and
    half a dozen ``(C, D)`` temporaries backwards; at 100,000 classes and D = 512 that is
    most of a CosFace step on a CPU. Here the norms scale the ``(B, C)`` product's columns,
    and the backward pass is two matrix products and one in-place pass over ``grad W``:
    ``∂cos[b, j]/∂W[j] = f[b]/|W[j]| − cos[b, j]·W[j]/|W[j]|²``.
    """

    @staticmethod
    def forward(ctx: Any, unit: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        inverse = weight.norm(dim=1).clamp_min(NORM_EPS).reciprocal()
        cos = F.linear(unit, weight).mul_(inverse)
        ctx.save_for_backward(unit, weight, inverse, cos)
        return cos

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        unit, weight, inverse, cos = ctx.saved_tensors
        scaled = grad * inverse
        grad_unit = scaled @ weight if ctx.needs_input_grad[0] else None
        grad_weight = None
        if ctx.needs_input_grad[1]:
            along = (grad * cos).sum(dim=0).mul_(inverse).mul_(inverse)
            grad_weight = scaled.t() @ unit
            grad_weight.addcmul_(weight, along.unsqueeze(1), value=-1.0)
        return grad_unit, grad_weight


class MarginHead(nn.Module):
    """Normalised linear classifier with a per-variant target-logit margin.

    Args:
        embedding_dim: size ``D`` of the features.
        num_classes: number ``C`` of training classes (of this rank's shard, in a sharded
            run).
        scale: the logit scale ``s`` (> 0).
        margin: the margin; its unit is set by the subclass (a cosine for CosFace,
            radians for ArcFace), never degrees.
    """

    def __init__(
        self, embedding_dim: int, num_classes: int, scale: float, margin: float = 0.0
    ) -> None:
        super().__init__()
        self.embedding_dim = checks.positive_int("embedding_dim", embedding_dim)
        self.num_classes = checks.positive_int("num_classes", num_classes)
        self.scale = checks.finite_float("scale", scale, minimum=0.0, strict_minimum=True)
        self.margin = checks.finite_float("margin", margin, minimum=0.0)
        self.weight = nn.Parameter(torch.empty(self.num_classes, self.embedding_dim))
        nn.init.normal_(self.weight, std=0.01)
        # Not saved with the weights: a run derives them from its class sizes at setup.
        self.class_margins: torch.Tensor | None
        self.register_buffer("class_margins", None, persistent=False)

    def extra_repr(self) -> str:
        per_class = "" if self.class_margins is None else ", class_margins=per class"
        return (
            f"embedding_dim={self.embedding_dim}, num_classes={self.num_classes}, "
            f"scale={self.scale}, margin={self.margin}{per_class}"
        )

    #: The largest margin a class may have (ArcFace's angle may not pass π).
    max_margin = math.inf

    def set_class_margins(self, margins: torch.Tensor | None) -> None:
        """Give every class its own margin (``(C,)``, in the head's unit, each in
        ``[0, max_margin]``) in place of ``margin``; ``None`` goes back to ``margin``."""
        if margins is None:
            self.class_margins = None
            return
        if not isinstance(margins, torch.Tensor) or tuple(margins.shape) != (self.num_classes,):
            shape = tuple(margins.shape) if isinstance(margins, torch.Tensor) else margins
            raise ValueError(f"class_margins must have shape ({self.num_classes},), got {shape!r}")
        values = margins.detach().to(torch.float64)
        bad = ~(torch.isfinite(values) & (values >= 0) & (values <= self.max_margin))
        if bool(bad.any()):
            index = int(bad.nonzero()[0])
            bound = (
                "be finite and >= 0"
                if math.isinf(self.max_margin)
                else (f"lie in [0, {self.max_margin}]")
            )
            raise ValueError(
                f"class_margins must {bound}, got {float(values[index])!r} at class {index}"
            )
        self.class_margins = margins.detach().to(self.weight.device, self.weight.dtype)

    def margin_for(self, classes: torch.Tensor, like: torch.Tensor) -> torch.Tensor | float:
        """The margin of each target: ``margin``, or the ``(n, 1)`` per-class margins of
        ``classes`` (the head's columns) in ``like``'s dtype."""
        if self.class_margins is None:
            return self.margin
        return self.class_margins.index_select(0, classes).to(like.dtype).unsqueeze(1)

    def cosine(self, features: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, C)`` cosines between L2-normalised features and class weights (``(B, n)``
        with the weight rows ``rows`` only), in float32 (float64 for float64 inputs),
        outside any autocast region."""
        dtype = compute_dtype(features, self.weight)
        weight = self.weight if rows is None else self.weight.index_select(0, rows)
        with torch.autocast(features.device.type, enabled=False):
            unit = F.normalize(features.to(dtype), dim=1)
            return _CosineToWeights.apply(unit, weight.to(dtype))

    def target_cosine(
        self, cos_y: torch.Tensor, alpha_y: torch.Tensor | None, classes: torch.Tensor
    ) -> torch.Tensor:
        """The target's cosine after the cloud offset and the margin; ``(n, 1)`` in and out.

        ``alpha_y`` is ``None`` when no offsets were given; ``classes`` are the targets'
        columns, whose margins :meth:`margin_for` gives.
        """
        if alpha_y is None:
            return cos_y
        return shifted_cosine(cos_y, alpha_y)

    def forward(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        alpha: torch.Tensor | CloudRows | None = None,
    ) -> torch.Tensor:
        """Scaled logits ``(B, C)``.

        Args:
            features: ``(B, D)`` embeddings, any floating dtype.
            labels: ``(B,)`` integer class indices in ``[0, C)``.
            alpha: angular offsets in radians (spec §6): a dense ``(B, C)`` tensor, or the
                :class:`CloudRows` of the samples that have them. ``None``, all zeros, or a
                sample whose row is all zeros gives exactly the baseline logits of spec §2.
        """
        checks.features_tensor("features", features, self.embedding_dim)
        labels = checks.labels_tensor("labels", labels, features.shape[0], self.num_classes)
        if isinstance(alpha, torch.Tensor):
            alpha = self._check_alpha(alpha, features.shape[0])
            rows = (alpha != 0).any(dim=1).nonzero().squeeze(1)
            alpha = CloudRows(rows, alpha.index_select(0, rows))
        cos = self.cosine(features)
        index = labels.unsqueeze(1)
        cos_y = cos.gather(1, index)
        alpha_y = None
        if alpha is not None and alpha.any:
            offsets = alpha.offsets.detach().to(cos.dtype)
            positions = torch.arange(labels.numel(), device=labels.device)
            alpha_y = alpha.at_targets(labels.numel(), positions, labels, cos.dtype)
            if alpha.shift_others:
                moved = angular_shift(cos.index_select(0, alpha.rows), offsets)
                cos = cos.index_copy(0, alpha.rows, moved)
        logits = cos.scatter(1, index, self.target_cosine(cos_y, alpha_y, labels))
        return logits * self.scale

    def loss(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        workspace: Workspace,
        cloud: CloudRows | None = None,
        shard: ClassShard | None = None,
        terms: LossTerms = PLAIN,
        sample: SampledClasses | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The training step's cross-entropy over all classes (or ``sample``'s) of the logits
        :meth:`forward` gives (plus ``terms``' bias), formed with its gradient in one
        autograd node, and each sample's "target logit is the largest" (among the kept
        classes). Unchecked arguments, for a criterion that checked them.

        Args:
            features: ``(B, D)`` the batch (in a sharded run, every rank's).
            labels: ``(B,)`` class indices over all classes.
            workspace: where the step's large buffers are borrowed from.
            cloud: the offsets of the samples that have them (used as scratch) and their
                reading; ``None``: the baseline.
            shard: the classes this head holds (``None``: all of them, one process).
            terms: the sample weights, a per-class logit bias (of this head's classes) and
                label smoothing; the default is the batch-mean cross-entropy.
            sample: the rows a Partial FC step keeps (every target's among them), ``None``
                for all; the cloud's per-logit offsets are then one per kept row.
        """
        return margin_softmax_cross_entropy(
            self.cosine(features, None if sample is None else sample.rows),
            labels,
            workspace,
            cloud,
            shard or ClassShard(self.num_classes),
            terms,
            sample,
            self.target_cosine,
            self.scale,
        )

    def _check_alpha(self, alpha: object, batch: int) -> torch.Tensor:
        if not isinstance(alpha, torch.Tensor) or not alpha.is_floating_point():
            raise ValueError(f"alpha must be a floating-point tensor, got {alpha!r:.80}")
        if tuple(alpha.shape) != (batch, self.num_classes):
            raise ValueError(
                f"alpha must have shape ({batch}, {self.num_classes}), got {tuple(alpha.shape)}"
            )
        return alpha.detach()
