"""The job specification: one pydantic model describing a whole training run.

The same ``JobSpec`` drives ``leap train SPEC.yaml`` and the REST API (its JSON schema is
what ``POST /v1/jobs`` accepts). Defaults follow the paper's re-ID setting (spec §2, §8):
ResNet-50, BN neck, 2048-d features, Adam at 3.5e-4 with warm-up and step decay, P×K
sampling, γ = 0.1. Every model forbids unknown fields, so a typo is an error, not a
silently ignored setting; errors name the dotted field path.
"""

from __future__ import annotations

import re
from itertools import pairwise
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from leap_core import families
from leap_core.data.readers import READERS
from leap_core.schedules import SCHEDULES

# The names come from the tables, so a new format, schedule, head or backbone is one entry
# there; the schema (and the API's OpenAPI document) still lists every accepted name. The
# heads' and backbones' tables name where their torch modules live, so validating a spec
# imports no torch.
if TYPE_CHECKING:
    DatasetFormat = str
    ScheduleKind = str
    HeadKind = str
    BackboneName = str
else:
    DatasetFormat = Literal[("synthetic", *READERS)]
    ScheduleKind = Literal[tuple(SCHEDULES)]
    HeadKind = Literal[tuple(families.HEADS)]
    BackboneName = Literal[tuple(families.BACKBONES)]

#: The paper's head hyper-parameters (spec §2): (scale, margin) per protocol and head.
PAPER_HEAD_DEFAULTS: dict[str, dict[str, tuple[float, float]]] = {
    "reid": {"normface": (16.0, 0.0), "cosface": (24.0, 0.2), "arcface": (16.0, 0.2)},
    "face": {"normface": (64.0, 0.0), "cosface": (64.0, 0.35), "arcface": (64.0, 0.5)},
}


#: The largest seed and epoch count: seeds go to ``numpy.random.seed`` (below 2**32), and
#: the service keeps epochs and a sweep's seeds in signed 32-bit database columns.
MAX_INT32 = 2**31 - 1


class SpecError(ValueError):
    """A job specification that does not validate; the message lists ``path: problem``."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SyntheticSpec(_Spec):
    """The procedurally rendered person-like dataset (the embedded default)."""

    @model_validator(mode="after")
    def _ranges(self) -> SyntheticSpec:
        for name in ("head_images", "tail_images"):
            value = getattr(self, name)
            if value is not None and not 1 <= value[0] <= value[1]:
                raise ValueError(
                    f"{name} must be [low, high] with 1 <= low <= high, got {list(value)}"
                )
        if self.head and self.head_images[0] <= self.tail_cap():
            raise ValueError(
                f"head_images {list(self.head_images)} must start above the "
                f"largest tail identity ({self.tail_cap()} images) so head and "
                f"tail identities can be told apart by their counts"
            )
        return self

    def tail_cap(self) -> int:
        """The most images a tail identity has."""
        return self.tail_images[1] if self.tail_images is not None else self.tail_samples

    identities: int = Field(100, ge=2, description="training identities")
    test_identities: int | None = Field(
        None, ge=1, description="query/gallery identities (default: as many as training identities)"
    )
    cameras: int = Field(6, ge=2)
    head: int = Field(10, ge=0, description="identities that keep all their images")
    tail_samples: int = Field(5, ge=1, description="images kept by every other identity")
    head_images: tuple[int, int] = Field(
        (16, 24), description="images of each head identity: a count drawn in [low, high]"
    )
    tail_images: tuple[int, int] | None = Field(
        None,
        description="images of each tail "
        "identity drawn in [low, high] instead of "
        "exactly tail_samples",
    )
    height: int = Field(64, ge=8)
    width: int = Field(32, ge=4)
    seed: int = Field(0, ge=0, le=MAX_INT32)


class LongTailSpec(_Spec):
    """How the training split is cut to a long tail (spec §7)."""

    kind: Literal["none", "reid", "face", "exponential"] = Field(
        "none",
        description="none: train on the split as it is; reid: <H h, S s>; "
        "face: <H h, T t>; exponential: CIFAR-LT profile",
    )
    head: int | None = Field(None, ge=0, description="H: head identities (reid, face)")
    tail_samples: int = Field(5, ge=1, description="S: images per tail identity")
    tail_classes: int | None = Field(None, ge=1, description="T: tail identities (face)")
    imbalance_factor: float | None = Field(None, ge=1, description="n_max / n_min (exponential)")
    head_threshold: int = Field(20, ge=0, description="exponential: head = more images")
    head_selection: Literal["count", "random"] = Field(
        "count",
        description="rank identities by image count (ties by pid), or at random "
        "with the seed (for balanced data such as Omniglot)",
    )
    seed: int = Field(0, ge=0, le=MAX_INT32)

    @model_validator(mode="after")
    def _needs(self) -> LongTailSpec:
        if self.kind in ("reid", "face") and self.head is None:
            raise ValueError(f"head is required for a {self.kind!r} long tail")
        if self.kind == "face" and self.tail_classes is None:
            raise ValueError("tail_classes is required for a 'face' long tail")
        if self.kind == "exponential" and self.imbalance_factor is None:
            raise ValueError("imbalance_factor is required for an 'exponential' long tail")
        return self


class DatasetSpec(_Spec):
    format: DatasetFormat = "synthetic"
    root: str | None = Field(
        None,
        description="dataset folder (RecordIO: the .rec file or "
        "its folder); synthetic: where it is generated, default "
        ".leap/data/synthetic-<settings>",
    )
    synthetic: SyntheticSpec = Field(
        default_factory=SyntheticSpec, description="used when format is synthetic"
    )
    long_tail: LongTailSpec = Field(default_factory=LongTailSpec)
    holdout: int = Field(0, ge=0, description="folders: identities held out for query/gallery")
    skip_bad: bool = Field(False, description="skip (and count) file names that do not parse")
    image_size: tuple[int, int] = Field((256, 128), description="input (height, width)")
    transforms: Literal["auto", "reid", "face"] = Field(
        "auto",
        description="reid: flip, pad+crop, erasing, ImageNet normalisation; face: "
        "flip, pixels in [-1, 1]; auto: face for recordio, else reid",
    )

    @model_validator(mode="after")
    def _root(self) -> DatasetSpec:
        if self.root is None and self.format != "synthetic" and READERS[self.format].needs_root:
            raise ValueError(f"root is required for format {self.format!r}")
        if min(self.image_size) < 8:
            raise ValueError(f"image_size must be at least 8x8, got {list(self.image_size)}")
        return self

    def transform_kind(self) -> Literal["reid", "face"]:
        if self.transforms != "auto":
            return self.transforms
        return "face" if self.format == "recordio" else "reid"


class ModelSpec(_Spec):
    backbone: BackboneName = "resnet50"
    pretrained: bool = Field(
        False,
        description="ImageNet weights from the local torch cache; never downloaded during a run",
    )
    last_stride: Literal[1, 2] = 1
    embedding_dim: int = Field(2048, ge=1)
    bn_neck: bool = True
    width: int = Field(32, ge=4, description="tiny_cnn: channels of the first stage")


class HeadSpec(_Spec):
    kind: HeadKind = "cosface"
    scale: float | None = Field(
        None,
        gt=0,
        description="s; default: the paper's for the evaluation protocol (re-ID or face)",
    )
    margin: float | None = Field(
        None, ge=0, description="CosFace: cosine units; ArcFace: radians; default: the paper's"
    )
    margin_profile: Literal["constant", "ldam"] = Field(
        "constant",
        description="constant: every class has margin; ldam: class i has "
        "margin*(K_min/K_i)^(1/4) (LDAM, Cao et al. 2019), the full margin on the smallest "
        "class",
    )
    sample_rate: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Partial FC: the share r of each rank's head rows a step's softmax "
        "covers, every class of the global batch among them (insightface's partial_fc_v2); "
        "1 computes every class",
    )


def epoch_or_fraction(value: object) -> int | float:
    """A start epoch as a spec gives it: an epoch (0, 1, 2, …) or a fraction of training
    below 1, so that shorter runs keep the proportion."""
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if number is None or number < 0 or (number >= 1 and number != int(number)):
        raise ValueError(
            "must be an epoch (0, 1, 2, …) or a fraction of train.epochs between 0 and 1"
        )
    return int(number) if number >= 1 or number == 0 else float(number)


#: A start epoch field: validated by :func:`epoch_or_fraction` before its type is checked.
StartEpoch = Annotated[int | float, BeforeValidator(epoch_or_fraction)]


def epoch_of(start: int | float, epochs: int) -> int:
    """The epoch :func:`epoch_or_fraction`'s ``start`` names in a run of ``epochs``."""
    return start if isinstance(start, int) else round(start * epochs)


class LeapSpec(_Spec):
    """The feature cloud (spec §3-§6), with the readings the paper leaves open as switches."""

    mode: Literal["off", "vanilla", "full", "constant", "shuffled"] = Field(
        "off",
        description="off: the plain margin loss; vanilla: eq. 6 (needs threshold); "
        "full: eq. 9; constant: the control, offsets of std constant_std for the classes "
        "constant_classes names; shuffled: the control, full mode's variances permuted "
        "among tail classes of the same size at every statistics update",
    )
    spread: Literal["leave_one_out", "paper"] = Field(
        "leave_one_out",
        description="how a class's spread is measured: leave_one_out, each image's angle to "
        "its class's centre without the image's own share, a repeated image counted once "
        "(classes of fewer than 3 images are not measured); paper: the angle to the centre "
        "of the class's own images, every sample counted",
    )
    constant_classes: Literal["tail", "matched"] = Field(
        "tail",
        description="constant mode: tail, every tail class; matched, exactly the classes "
        "full mode would cloud at that step (the same share of samples as LEAP)",
    )
    threshold: float | None = Field(
        None,
        ge=0,
        description="T: head when K_i > T (required for vanilla); also the run's head/tail split",
    )
    P: float = Field(1.0, gt=0, description="memory length in epochs: S_i = K_i x P")
    gamma: float = Field(0.1, ge=0, le=1, description="gamma of eq. 4 (see center_update)")
    center_update: Literal["center_loss", "literal"] = Field(
        "center_loss",
        description="center_loss: c <- gamma*batch_mean + (1-gamma)*c, a slow "
        "average; literal: eq. 4 as printed, c <- (1-gamma)*"
        "batch_mean + gamma*c (P x K sampler only)",
    )
    offset: Literal["per_logit", "per_sample", "target_only"] = Field(
        "per_logit",
        description="per_logit: one draw per class logit; per_sample: one draw "
        "shared by all of a sample's logits; target_only: one draw "
        "on the target logit",
    )
    constant_std: float | None = Field(
        None, gt=0, le=3.2, description="constant mode: the offsets' standard deviation in radians"
    )
    single_slot: Literal["zero_variance", "no_cloud"] = Field(
        "zero_variance",
        description="classes whose spread cannot be measured (a memory that can never "
        "hold two angles, ceil(K_i*P) = 1, or under leave_one_out fewer than 3 images): "
        "zero_variance counts their own variance as 0, so they get the whole target "
        "variance; no_cloud leaves them without a cloud",
    )
    cloud_start_epoch: StartEpoch = Field(
        20,
        description="first epoch with the cloud (0-based), or a fraction of train.epochs "
        "below 1 (0.33: the paper's 20 of 60), so that shorter runs keep the proportion",
    )
    update_every: int = Field(1, ge=1, description="statistics refreshed every N steps")
    cloud_samples: int = Field(1, ge=1, description="draws per cloud sample")

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml_off(cls, value: object) -> object:
        # YAML 1.1 reads a bare `off` as the boolean false.
        return "off" if value is False else value

    def start_epoch(self, epochs: int) -> int:
        """The first epoch with the cloud for a run of ``epochs`` epochs."""
        return epoch_of(self.cloud_start_epoch, epochs)

    @model_validator(mode="after")
    def _needs(self) -> LeapSpec:
        if self.mode == "vanilla" and self.threshold is None:
            raise ValueError("threshold is required when mode is 'vanilla'")
        if self.mode == "constant" and self.constant_std is None:
            raise ValueError("constant_std is required when mode is 'constant'")
        if self.mode != "constant" and self.constant_std is not None:
            raise ValueError(
                f"constant_std is only used when mode is 'constant' (mode is {self.mode!r})"
            )
        if self.mode != "constant" and self.constant_classes != "tail":
            raise ValueError(
                f"constant_classes is only used when mode is 'constant' (mode is {self.mode!r})"
            )
        return self

    def measures_classes(self) -> bool:
        """Whether the cloud's per-class statistics decide who gets offsets (every mode but
        off and the constant control on all tail classes)."""
        if self.mode == "constant":
            return self.constant_classes == "matched"
        return self.mode != "off"


class LossSpec(_Spec):
    """The long-tail methods that change the cross-entropy (besides the head's margin and
    the feature cloud); each composes with every head and with the cloud."""

    label_smoothing: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="epsilon: the target is 1-epsilon on the label and epsilon/C on every "
        "class (torchreid's --label-smooth, fast-reid's CE.EPSILON; 0.1 is usual)",
    )
    class_balanced_beta: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="beta of class-balanced re-weighting: sample weight "
        "(1-beta)/(1-beta^K_y), the batch's weighted mean (Cui et al. 2019; 0.999 is usual)",
    )
    reweight_start_epoch: StartEpoch = Field(
        0,
        description="first epoch weighted by class_balanced_beta (0-based), or a fraction of "
        "train.epochs below 1; later than 0 is deferred re-weighting (DRW, Cao et al. 2019, "
        "who start at 0.8 of training)",
    )
    logit_adjustment: float = Field(
        0.0,
        ge=0,
        description="tau: tau*log(pi_i) added to class i's training logit, pi_i its share "
        "of the training images (Menon et al. 2021; 1.0 is the balanced softmax)",
    )

    def start_epoch(self, epochs: int) -> int:
        """The first re-weighted epoch of a run of ``epochs`` epochs."""
        return epoch_of(self.reweight_start_epoch, epochs)

    @model_validator(mode="after")
    def _needs(self) -> LossSpec:
        if self.reweight_start_epoch != 0 and self.class_balanced_beta is None:
            raise ValueError(
                "reweight_start_epoch is only used with class_balanced_beta (got "
                f"{self.reweight_start_epoch!r} and no class_balanced_beta)"
            )
        if self.logit_adjustment and self.class_balanced_beta is not None:
            raise ValueError(
                "logit_adjustment and class_balanced_beta both correct for the class prior "
                f"(got {self.logit_adjustment!r} and {self.class_balanced_beta!r}); together "
                "they correct it twice: choose one"
            )
        return self

    def changes_loss(self) -> bool:
        """Whether any of the terms is on."""
        return bool(
            self.label_smoothing or self.class_balanced_beta is not None or self.logit_adjustment
        )


class MethodSpec(_Spec):
    head: HeadSpec = Field(default_factory=HeadSpec)
    leap: LeapSpec = Field(default_factory=LeapSpec)
    loss: LossSpec = Field(default_factory=LossSpec)

    @model_validator(mode="after")
    def _margin_head(self) -> MethodSpec:
        if self.head.margin_profile == "ldam" and self.head.kind == "normface":
            raise ValueError(
                "head.margin_profile 'ldam' sets a margin per class, but head.kind "
                "'normface' has no margin: use 'cosface' or 'arcface'"
            )
        return self


class SamplerSpec(_Spec):
    kind: Literal["pk", "random", "class_aware"] = "pk"
    identities: int = Field(16, ge=1, description="P: identities per batch (pk)")
    instances: int = Field(4, ge=1, description="K: images per identity (pk)")
    batch_size: int | None = Field(
        None, ge=1, description="random, class_aware: images per batch (default P x K)"
    )

    def batch(self) -> int:
        if self.kind == "pk" or self.batch_size is None:
            return self.identities * self.instances
        return self.batch_size


class OptimizerSpec(_Spec):
    kind: Literal["adam", "sgd"] = "adam"
    lr: float = Field(3.5e-4, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd only")


class ScheduleSpec(_Spec):
    kind: ScheduleKind = "warmup_multistep"
    warmup_epochs: float = Field(10.0, ge=0)
    warmup_factor: float = Field(0.01, gt=0, le=1)
    milestones: list[float] = Field(default_factory=lambda: [40.0, 55.0])
    gamma: float = Field(0.1, gt=0, le=1, description="decay at each milestone")
    min_lr: float = Field(0.0, ge=0, description="cosine: final rate")
    max_lr: float | None = Field(None, gt=0, description="triangular: peak (default 10 x lr)")
    cycle_epochs: float = Field(10.0, gt=0, description="triangular: epochs per cycle")


class TrainSpec(_Spec):
    epochs: int = Field(60, ge=1, le=MAX_INT32)
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    amp: bool = Field(True, description="mixed precision on CUDA (ignored on CPU)")
    grad_clip: float | None = Field(None, gt=0, description="max gradient norm")
    seed: int = Field(0, ge=0, le=MAX_INT32)
    checkpoint_every: int = Field(1, ge=1, description="epochs between checkpoints")
    checkpoint_every_steps: int | None = Field(
        None,
        ge=1,
        description="also checkpoint every this many optimizer steps, within epochs (a "
        "resumed run continues at the step it stopped at)",
    )
    checkpoint_minutes: float | None = Field(
        None,
        gt=0,
        description="also checkpoint at the first step boundary after this many minutes "
        "since the last checkpoint",
    )
    num_workers: int = Field(
        4,
        ge=0,
        description="data-loader processes for a training set read image by image (one "
        "over cache_decoded_mb); a set decoded in memory needs none",
    )
    cache_decoded_mb: int = Field(
        2048,
        ge=0,
        description="memory budget (MiB) for decoding the training images once and keeping "
        "them in memory as uint8 at image_size (3·H·W bytes each: 12,936 Market-1501 images "
        "at 256×128 take 1,213 MiB); a larger set is decoded at every step; 0: never",
    )
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    steps_per_epoch: int | None = Field(
        None,
        ge=1,
        description="cap on steps per epoch (quick runs); default: one pass over the sampler",
    )


class EvalSpec(_Spec):
    protocol: Literal["reid", "face", "none"] = Field(
        "reid",
        description="reid: query/gallery retrieval (CMC, mAP, mINP); face: LFW-style "
        "10-fold verification accuracy on a pairs file",
    )
    every_epochs: int = Field(10, ge=0, description="0: only after the last epoch")
    rerank: bool = Field(
        False,
        description="k-reciprocal re-ranking (k1=20, k2=6, λ=0.3) from the features, in "
        "memory that grows with the images times k1 (MSMT17's 93,820 images: under 2 GB)",
    )
    batch_size: int = Field(128, ge=1)
    diagnostics: bool = Field(
        True,
        description="after training, embed the training set and "
        "report head/tail intra-class angular statistics",
    )
    diagnostics_per_class: int | None = Field(
        50,
        ge=1,
        description="diagnostics: at most this many training images per class "
        "(seeded draw) are embedded, so the end-of-run work stays small on large head "
        "classes; null: every training image",
    )
    unseen_per_class: int = Field(
        5,
        ge=0,
        description="diagnostics: at most this many "
        "images per training class that the long-tail cut left out "
        "(seeded draw) are classified, to show the gap between seen "
        "and unseen images; 0: none",
    )
    class_size_bins: list[int] = Field(
        default_factory=lambda: [1, 3, 6, 10],
        description="diagnostics: upper edges of the K_i bins (images per training class) "
        "the unseen-image accuracy and retrieval mAP are also reported by; [1, 3, 6, 10] "
        "gives K1, K2-3, K4-6, K7-10 and K11+",
    )
    lfw_root: str | None = Field(None, description="face: folder of <Name>/<Name>_NNNN.jpg")
    pairs_file: str | None = Field(
        None, description="face: pairs.txt (10 folds) or pairsDevTest.txt"
    )

    @field_validator("class_size_bins")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        if any(edge < 1 for edge in value) or any(b <= a for a, b in pairwise(value)):
            raise ValueError(f"must be increasing positive class sizes, got {value}")
        return value

    @model_validator(mode="after")
    def _face_inputs(self) -> EvalSpec:
        if self.protocol == "face" and (self.lfw_root is None or self.pairs_file is None):
            raise ValueError("lfw_root and pairs_file are required when protocol is 'face'")
        return self


class TrackingSpec(_Spec):
    """What the MLflow run keeps besides params, metrics and the checkpoint."""

    plots: bool = Field(
        True, description="class-frequency, angular-variance, t-SNE and CMC/ROC figures at the end"
    )
    log_model: bool = Field(
        True,
        description="the embedding network as an MLflow pt2 "
        "model at the end (exporting it takes seconds)",
    )
    register_model: str | None = Field(
        None,
        description="register the logged model under this name in the MLflow model registry: "
        "each run a new version, tagged with its method, dataset, long-tail setting and "
        "headline metrics",
    )
    register_alias: str = Field(
        "newest",
        description="alias moved to each newly registered version (models:/NAME@newest); "
        "MLflow reserves 'latest' (models:/NAME/latest is the highest version number)",
    )

    @model_validator(mode="after")
    def _registry(self) -> TrackingSpec:
        name = self.register_model
        if name is not None and (not name.strip() or set(name) & set("/:@")):
            raise ValueError(
                f"register_model must be a non-empty name without '/', ':' or '@' (they "
                f"break models:/ URIs), got {name!r}"
            )
        if name is not None and not self.log_model:
            raise ValueError("register_model needs log_model: true (it registers that model)")
        alias = self.register_alias
        if (
            not re.fullmatch(r"[A-Za-z0-9_-]{1,255}", alias)
            or alias.lower() == "latest"
            or (re.fullmatch(r"[vV]\d+", alias))
        ):
            raise ValueError(
                f"register_alias must be letters, digits, '_' or '-', neither 'latest' nor a "
                f"version like 'v3' (MLflow reserves both), got {alias!r}"
            )
        return self


class ResourcesSpec(_Spec):
    """What one run occupies."""

    devices: int = Field(
        1,
        ge=1,
        le=1024,
        description="processes of one run, one per GPU (on a CPU-only machine, CPU "
        "processes); the classes are sharded across them",
    )


class JobSpec(_Spec):
    """A whole training run."""

    name: str | None = Field(None, max_length=200)
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    method: MethodSpec = Field(default_factory=MethodSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    eval: EvalSpec = Field(default_factory=EvalSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)

    @model_validator(mode="after")
    def _consistent(self) -> JobSpec:
        leap = self.method.leap
        if leap.mode != "off" and leap.start_epoch(self.train.epochs) >= self.train.epochs:
            raise ValueError(
                f"method.leap.cloud_start_epoch ({leap.cloud_start_epoch}) must "
                f"be below train.epochs ({self.train.epochs}) or the cloud "
                f"never applies; give it as a fraction of training (e.g. 0.25) to "
                f"keep it in proportion when the run is shortened"
            )
        loss = self.method.loss
        if (
            loss.class_balanced_beta is not None
            and loss.start_epoch(self.train.epochs) >= self.train.epochs
        ):
            raise ValueError(
                f"method.loss.reweight_start_epoch ({loss.reweight_start_epoch}) must be below "
                f"train.epochs ({self.train.epochs}) or no epoch is re-weighted"
            )
        sampler = self.train.sampler.kind
        if leap.measures_classes() and leap.center_update == "literal" and sampler != "pk":
            raise ValueError(
                f"method.leap.center_update 'literal' cannot be used with train.sampler.kind "
                f"{sampler!r}: most classes have one sample per such batch, so the literal "
                f"eq. 4 puts the centre almost on the feature and the angle statistics "
                f"collapse; use method.leap.center_update 'center_loss' or the 'pk' sampler"
            )
        if self.model.backbone == "tiny_cnn" and self.model.pretrained:
            raise ValueError("model.pretrained must be false for backbone 'tiny_cnn'")
        return self

    def head_parameters(self) -> tuple[float, float]:
        """``(scale, margin)``: the spec's, or the paper's defaults for the protocol."""
        protocol = "face" if self.dataset.format == "recordio" else "reid"
        scale, margin = PAPER_HEAD_DEFAULTS[protocol][self.method.head.kind]
        head = self.method.head
        return (
            head.scale if head.scale is not None else scale,
            head.margin if head.margin is not None else margin,
        )


def format_validation_error(error: ValidationError) -> str:
    """One line per problem: ``dotted.path: message (got value)``."""
    lines = []
    for problem in error.errors():
        path = ".".join(str(part) for part in problem["loc"]) or "spec"
        message = problem["msg"].removeprefix("Value error, ")
        got = problem.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{path}: {message}{shown}")
    return "\n".join(lines)


def parse_spec(data: dict[str, Any]) -> JobSpec:
    """Validate a mapping into a :class:`JobSpec`, raising :class:`SpecError`."""
    if not isinstance(data, dict):
        raise SpecError(f"spec: must be a mapping of sections, got {type(data).__name__}")
    try:
        return JobSpec.model_validate(data)
    except ValidationError as error:
        raise SpecError(format_validation_error(error)) from None
