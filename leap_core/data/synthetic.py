"""A seeded, long-tailed, person-like re-ID dataset rendered from scratch: the default dataset.

Demos, tests and CI need a dataset that exists everywhere, downloads nothing, is written in
seconds and still behaves like re-ID data. Each identity is an outfit (shirt and trouser
colours, a shirt pattern among solid / horizontal stripes / vertical stripes / checks, hair,
skin, shoes, an optional bag on one side, a build). Each image varies pose (leg spread, arm
swing), scale, position in the crop, mirror image, lighting (brightness and a vertical
gradient), adds the camera's colour cast and background, and pixel noise. Identities share
colours often enough that the task is learnable but not trivial.

Layouts (``layout``):
- ``market1501``: ``bounding_box_train`` (train identities, long-tailed ``<H, S>``), ``query``
  and ``bounding_box_test`` (a disjoint set of test identities), Market-1501 file names, plus
  a few distractors (pid 0) and junk boxes (pid -1) in the gallery, as in Market-1501;
- ``folders``: ``train/<id>``, ``query/<id>``, ``gallery/<id>`` identity folders (no
  distractors or junk, which that layout cannot express).

Train pids are ``1..identities``; the ``head`` head identities are drawn with the seed and get
``head_images`` images each (a count drawn uniformly in the range), the others
``tail_samples`` (or a count drawn in ``tail_images`` when that range is given). Test pids
follow the train pids.
Every test identity is seen by 2 or more cameras; its queries are in distinct cameras and its
gallery covers all of its cameras, so every query has a cross-camera match.
"""

from __future__ import annotations

import colorsys
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from leap_core.data.records import DatasetError

Layout = Literal["market1501", "folders"]
_SKIN = np.array(
    [
        [0.96, 0.80, 0.69],
        [0.89, 0.69, 0.55],
        [0.76, 0.57, 0.42],
        [0.55, 0.38, 0.26],
        [0.36, 0.24, 0.16],
    ],
    dtype=np.float32,
)
_HAIR = np.array(
    [
        [0.08, 0.06, 0.05],
        [0.25, 0.16, 0.09],
        [0.55, 0.40, 0.22],
        [0.80, 0.70, 0.45],
        [0.55, 0.55, 0.55],
    ],
    dtype=np.float32,
)


@dataclass(frozen=True)
class SynthConfig:
    """What to generate; see the module docstring for the meaning of each part."""

    identities: int = 100
    test_identities: int | None = None
    cameras: int = 6
    head: int = 10
    tail_samples: int = 5
    head_images: tuple[int, int] = (16, 24)
    tail_images: tuple[int, int] | None = None
    queries_per_id: int = 1
    gallery_per_id: int = 6
    distractors: int = 10
    junk: int = 5
    height: int = 64
    width: int = 32
    seed: int = 0
    layout: Layout = "market1501"
    jpeg_quality: int = 90

    def validate(self) -> None:
        """Raise ``DatasetError`` naming the first bad field."""
        minimums = {
            "identities": 1,
            "cameras": 2,
            "tail_samples": 1,
            "queries_per_id": 1,
            "gallery_per_id": 1,
            "distractors": 0,
            "junk": 0,
            "height": 8,
            "width": 4,
            "seed": 0,
            "head": 0,
            "jpeg_quality": 1,
        }
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise DatasetError(f"{name} must be an integer >= {minimum}, got {value!r}")
        if self.head >= self.identities:
            raise DatasetError(
                f"head must be below identities ({self.identities}) so the tail is not empty, "
                f"got {self.head}"
            )
        if self.test_identities is not None and self.test_identities < 1:
            raise DatasetError(f"test_identities must be >= 1, got {self.test_identities}")
        low, high = self.head_images
        if not 1 <= low <= high:
            raise DatasetError(
                f"head_images must be (low, high) with 1 <= low <= high, got {self.head_images}"
            )
        if self.tail_images is not None:
            low, high = self.tail_images
            if not 1 <= low <= high:
                raise DatasetError(
                    f"tail_images must be (low, high) with 1 <= low <= high, got {self.tail_images}"
                )
        if self.layout not in ("market1501", "folders"):
            raise DatasetError(f"layout must be 'market1501' or 'folders', got {self.layout!r}")


@dataclass(frozen=True)
class Outfit:
    """The fixed appearance of one identity (colours as float32 RGB in [0, 1])."""

    shirt: np.ndarray
    pattern_colour: np.ndarray
    pattern: int
    period: float
    trousers: np.ndarray
    shoes: np.ndarray
    skin: np.ndarray
    hair: np.ndarray
    bag: np.ndarray | None
    bag_side: float
    build: float
    short_sleeves: bool


def _colour(rng: np.random.Generator) -> np.ndarray:
    hue = rng.random()
    saturation = rng.uniform(0.25, 0.95)
    value = rng.uniform(0.2, 0.95)
    return np.array(colorsys.hsv_to_rgb(hue, saturation, value), dtype=np.float32)


def make_outfit(rng: np.random.Generator) -> Outfit:
    """Draw one identity's appearance."""
    return Outfit(
        shirt=_colour(rng),
        pattern_colour=_colour(rng),
        pattern=int(rng.integers(4)),
        period=float(rng.uniform(5.0, 10.0)),
        trousers=_colour(rng) * np.float32(rng.uniform(0.5, 1.0)),
        shoes=_colour(rng) * np.float32(0.35),
        skin=_SKIN[rng.integers(len(_SKIN))],
        hair=_HAIR[rng.integers(len(_HAIR))],
        bag=_colour(rng) if rng.random() < 0.4 else None,
        bag_side=1.0 if rng.random() < 0.5 else -1.0,
        build=float(rng.uniform(0.85, 1.15)),
        short_sleeves=bool(rng.random() < 0.5),
    )


class PersonRenderer:
    """Renders outfits as person-like images of one size, with per-camera backgrounds."""

    def __init__(self, height: int, width: int, cameras: int, seed: int) -> None:
        self.height = height
        self.width = width
        self.y = ((np.arange(height, dtype=np.float32) + 0.5) / height)[:, None]
        self.x = ((np.arange(width, dtype=np.float32) + 0.5) / height)[None, :]
        rng = np.random.default_rng([seed, 7])
        self.cast = rng.uniform(0.8, 1.2, size=(cameras, 3)).astype(np.float32)
        self.wall = np.stack([_colour(rng) for _ in range(cameras)]) * np.float32(0.8)
        self.floor = np.stack([_colour(rng) for _ in range(cameras)]) * np.float32(0.6)
        self.horizon = rng.uniform(0.55, 0.8, size=cameras).astype(np.float32)

    def background(self, camera: int, rng: np.random.Generator) -> np.ndarray:
        """The camera's wall and floor with a random tilt of the lighting."""
        tilt = np.float32(rng.uniform(-0.25, 0.25))
        horizon = self.horizon[camera] + np.float32(rng.uniform(-0.05, 0.05))
        shade = 1 + tilt * (self.x - 0.25)
        wall = self.wall[camera] * shade[..., None]
        floor = self.floor[camera] * shade[..., None]
        return np.where((self.y > horizon)[..., None], floor, wall).astype(np.float32)

    def render(self, outfit: Outfit | None, camera: int, rng: np.random.Generator) -> np.ndarray:
        """One uint8 ``(H, W, 3)`` image of ``outfit`` (``None``: background only) in ``camera``."""
        canvas = np.broadcast_to(self.background(camera, rng), (self.height, self.width, 3))
        if outfit is not None:
            canvas = self._draw(canvas, outfit, rng)
        brightness = np.float32(rng.uniform(0.7, 1.25))
        gradient = np.float32(rng.uniform(-0.3, 0.3))
        light = brightness * (1 + gradient * (self.y - 0.5))
        noise = rng.standard_normal(canvas.shape, dtype=np.float32) * np.float32(
            rng.uniform(0.02, 0.06)
        )
        image = canvas * self.cast[camera] * light[..., None] + noise
        return (np.clip(image, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)

    def _draw(self, canvas: np.ndarray, o: Outfit, rng: np.random.Generator) -> np.ndarray:
        scale = np.float32(rng.uniform(0.78, 0.98))
        top = np.float32(rng.uniform(0.0, 1.0 - scale))
        centre = np.float32(self.width / self.height / 2 + rng.uniform(-0.05, 0.05))
        mirror = np.float32(1.0 if rng.random() < 0.5 else -1.0)
        spread = np.float32(rng.uniform(-1.0, 1.0))
        swing = np.float32(rng.uniform(-1.0, 1.0))
        v = (self.y - top) / scale  # 0 at the top of the head, 1 at the soles
        u = mirror * (self.x - centre) / scale  # body-relative horizontal position
        b = np.float32(o.build)
        out = canvas

        def paint(mask: np.ndarray, colour: np.ndarray) -> None:
            nonlocal out
            out = np.where(mask[..., None], colour, out)

        legs_top, feet = np.float32(0.52), np.float32(0.93)
        offset = spread * np.float32(0.12) * np.clip(v, legs_top, feet) - spread * 0.12 * legs_top
        left = np.abs(u + 0.045 * b + offset) < 0.04 * b
        right = np.abs(u - 0.045 * b - offset) < 0.04 * b
        paint((v >= legs_top) & (v < feet) & (left | right), o.trousers)
        paint((v >= feet) & (v < 1.0) & (left | right), o.shoes)
        torso_v = (v >= 0.16) & (v < legs_top + 0.02)
        torso = torso_v & (np.abs(u) < 0.105 * b)
        if o.pattern == 0:
            paint(torso, o.shirt)
        else:
            stripes_h = ((v * scale * self.height / o.period) % 1.0) < 0.5
            stripes_v = ((u * scale * self.height / o.period) % 1.0) < 0.5
            pattern = [stripes_h, stripes_v, stripes_h ^ stripes_v][o.pattern - 1]
            paint(torso, np.where(pattern[..., None], o.pattern_colour, o.shirt))
        arm_shift = swing * 0.03
        arm_u = (np.abs(u) >= 0.105 * b) & (np.abs(u) < 0.15 * b)
        arm_v = (v >= 0.17 + arm_shift * np.sign(u)) & (v < 0.49 + arm_shift * np.sign(u))
        sleeve_end = 0.28 if o.short_sleeves else 0.43
        paint(arm_u & arm_v & (v < sleeve_end + arm_shift * np.sign(u)), o.shirt)
        paint(arm_u & arm_v & (v >= sleeve_end + arm_shift * np.sign(u)), o.skin)
        head = ((v - 0.085) / 0.075) ** 2 + (u / 0.055) ** 2 < 1.0
        paint(head, o.skin)
        paint(head & (v < 0.06 + 0.02 * (np.abs(u) > 0.035)), o.hair)
        paint(((v >= 0.148) & (v < 0.16)) & (np.abs(u) < 0.025), o.skin)
        if o.bag is not None:
            side = o.bag_side
            bag = (v >= 0.32) & (v < 0.55) & (side * u >= 0.15 * b) & (side * u < 0.24 * b)
            paint(bag, o.bag)
        return out


@dataclass(frozen=True)
class SynthSummary:
    """What was written: image counts per split and where."""

    root: str
    layout: str
    train_images: int
    query_images: int
    gallery_images: int
    train_ids: int
    test_ids: int
    head_pids: tuple[int, ...]


def _plan(config: SynthConfig) -> tuple[list[tuple[str, int, int, int]], set[int]]:
    """Every image to render as ``(split, pid, camera, index_within_identity)``, in order,
    and the head pids."""
    rng = np.random.default_rng([config.seed, 3])
    ids = config.identities
    test_ids = config.test_identities or ids
    heads = set((rng.permutation(ids)[: config.head] + 1).tolist())
    plan: list[tuple[str, int, int, int]] = []
    for pid in range(1, ids + 1):
        if pid in heads:
            count = int(rng.integers(config.head_images[0], config.head_images[1] + 1))
        elif config.tail_images is not None:
            count = int(rng.integers(config.tail_images[0], config.tail_images[1] + 1))
        else:
            count = config.tail_samples
        cams = rng.permutation(config.cameras)[: int(rng.integers(2, config.cameras + 1))]
        plan += [("train", pid, int(cams[i % len(cams)]), i) for i in range(count)]
    for pid in range(ids + 1, ids + test_ids + 1):
        cams = rng.permutation(config.cameras)[: int(rng.integers(2, config.cameras + 1))]
        queries = min(config.queries_per_id, len(cams) - 1)
        plan += [("query", pid, int(cams[i]), i) for i in range(queries)]
        gallery = max(config.gallery_per_id, len(cams))
        plan += [("gallery", pid, int(cams[i % len(cams)]), queries + i) for i in range(gallery)]
    if config.layout == "market1501":
        plan += [
            ("gallery", 0, int(rng.integers(config.cameras)), i) for i in range(config.distractors)
        ]
        plan += [("gallery", -1, int(rng.integers(config.cameras)), i) for i in range(config.junk)]
    return plan, heads


def _file_name(config: SynthConfig, split: str, pid: int, camera: int, index: int) -> str:
    if config.layout == "folders":
        return f"{split}/id{pid:04d}/c{camera + 1}_{index:04d}.jpg"
    folder = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
    name = "-1" if pid < 0 else f"{pid:04d}"
    frame = 1000 * index + 7 * camera + 1
    return f"{folder[split]}/{name}_c{camera + 1}s1_{frame:06d}_01.jpg"


def generate_synthetic(
    out_dir: str | os.PathLike[str],
    config: SynthConfig | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> SynthSummary:
    """Write the dataset of ``config`` under ``out_dir`` (which must be absent or empty).

    ``progress(done, total)`` is called every few images. Output is deterministic for a seed
    (same pixels, same files).
    """
    config = config or SynthConfig()
    config.validate()
    root = Path(out_dir)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DatasetError(f"out_dir: {root} exists and is not an empty directory")
    plan, heads = _plan(config)
    renderer = PersonRenderer(config.height, config.width, config.cameras, config.seed)
    outfits: dict[int, Outfit] = {}
    image_rng = np.random.default_rng([config.seed, 5])
    made_dirs: set[Path] = set()
    for done, (split, pid, camera, index) in enumerate(plan, start=1):
        if pid > 0:
            outfit = outfits.get(pid)
            if outfit is None:
                outfit = outfits[pid] = make_outfit(np.random.default_rng([config.seed, 11, pid]))
        elif pid == 0:
            outfit = make_outfit(image_rng)
        else:
            outfit = None
        pixels = renderer.render(outfit, camera, image_rng)
        path = root / _file_name(config, split, pid, camera, index)
        if path.parent not in made_dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            made_dirs.add(path.parent)
        Image.fromarray(pixels).save(path, format="JPEG", quality=config.jpeg_quality)
        if progress is not None and (done % 64 == 0 or done == len(plan)):
            progress(done, len(plan))
    if config.layout == "market1501":
        for folder in ("bounding_box_train", "query", "bounding_box_test"):
            (root / folder).mkdir(parents=True, exist_ok=True)
    counts = {s: sum(1 for p in plan if p[0] == s) for s in ("train", "query", "gallery")}
    return SynthSummary(
        root=str(root),
        layout=config.layout,
        train_images=counts["train"],
        query_images=counts["query"],
        gallery_images=counts["gallery"],
        train_ids=config.identities,
        test_ids=config.test_identities or config.identities,
        head_pids=tuple(sorted(heads)),
    )


def config_dict(config: SynthConfig) -> dict[str, object]:
    """The config as plain data (for logs and JSON)."""
    return asdict(config)
