"""The shared Omniglot copy as an identity-disjoint retrieval dataset.

Omniglot has 1,623 character classes drawn once by each of 20 people. Its background and
evaluation sets share no alphabet, which makes them a real identity-disjoint split like re-ID:

- train: the 964 background classes, all 20 drawings each (pid = class_id 1..964);
- query / gallery: the 659 evaluation classes (pid = class_id 965..1623). For evaluation row
  ``r`` the drawers ``(r + j) % 20`` for ``j < queries_per_class`` give the queries and the
  other drawers the gallery. Rotating the query drawer by class spreads queries over all
  drawers, and the split is fixed (no seed) so every run evaluates on the same queries;
- camera id = drawer index 0..19, so a query never has a same-camera match in the gallery.

The data is never committed: it is found at ``$LEAP_OMNIGLOT_ROOT`` or at
``<repo>/../shared/data/omniglot``. Images live in the npz arrays; a record path
``omniglot:/abs/images_background.npz#row/drawer`` names one, and ``load_omniglot_image``
decodes it (black strokes on white, 105x105).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from leap_core.data.records import DatasetError, Record, SplitListing

OMNIGLOT_ENV = "LEAP_OMNIGLOT_ROOT"
SCHEME = "omniglot:"
BACKGROUND_FILE = "images_background.npz"
EVALUATION_FILE = "images_evaluation.npz"
NUM_BACKGROUND = 964
DRAWERS = 20

_ARRAYS: dict[str, np.ndarray] = {}


def default_omniglot_root() -> Path:
    """``$LEAP_OMNIGLOT_ROOT`` if set, else ``<repo>/../shared/data/omniglot``."""
    override = os.environ.get(OMNIGLOT_ENV)
    if override:
        return Path(override)
    repo = Path(__file__).resolve().parents[2]
    return repo.parent / "shared" / "data" / "omniglot"


def omniglot_available(root: str | os.PathLike[str] | None = None) -> bool:
    """Whether both npz files are present (tests skip when they are not)."""
    base = Path(root) if root is not None else default_omniglot_root()
    return (base / BACKGROUND_FILE).is_file() and (base / EVALUATION_FILE).is_file()


def _labels_shape(npz: Path) -> tuple[int, int]:
    if not npz.is_file():
        raise DatasetError(f"{npz}: Omniglot file not found")
    with np.load(npz) as data:
        if "labels" not in data.files or "images" not in data.files:
            raise DatasetError(f"{npz}: expected arrays 'images' and 'labels', got {data.files}")
        labels = data["labels"]
    if labels.ndim != 2:
        raise DatasetError(f"{npz}: 'labels' must be 2-D (classes, drawers), got {labels.shape}")
    return int(labels.shape[0]), int(labels.shape[1])


def read_omniglot(
    root: str | os.PathLike[str] | None = None,
    *,
    queries_per_class: int = 1,
    max_train_classes: int | None = None,
    max_test_classes: int | None = None,
) -> SplitListing:
    """List Omniglot as train / query / gallery records (see the module docstring).

    ``max_train_classes`` / ``max_test_classes`` keep only the first rows, for quick runs.
    """
    base = (Path(root) if root is not None else default_omniglot_root()).resolve()
    background = base / BACKGROUND_FILE
    evaluation = base / EVALUATION_FILE
    train_rows, train_drawers = _labels_shape(background)
    test_rows, test_drawers = _labels_shape(evaluation)
    if not 1 <= queries_per_class < test_drawers:
        raise DatasetError(
            f"queries_per_class must be in [1, {test_drawers - 1}], got {queries_per_class}"
        )
    for name, limit in (
        ("max_train_classes", max_train_classes),
        ("max_test_classes", max_test_classes),
    ):
        if limit is not None and limit < 1:
            raise DatasetError(f"{name} must be >= 1, got {limit}")
    train_rows = min(train_rows, max_train_classes or train_rows)
    test_rows = min(test_rows, max_test_classes or test_rows)
    listing = SplitListing(name="omniglot")
    listing.train = [
        Record(f"{SCHEME}{background}#{row}/{drawer}", row + 1, drawer)
        for row in range(train_rows)
        for drawer in range(train_drawers)
    ]
    for row in range(test_rows):
        queries = {(row + j) % test_drawers for j in range(queries_per_class)}
        for drawer in range(test_drawers):
            record = Record(
                f"{SCHEME}{evaluation}#{row}/{drawer}", NUM_BACKGROUND + 1 + row, drawer
            )
            (listing.query if drawer in queries else listing.gallery).append(record)
    return listing


def load_omniglot_image(path: str) -> Image.Image:
    """Decode ``omniglot:/x/images_background.npz#row/drawer`` to an RGB image.

    The whole array of a file is loaded once per process and cached: decompressing it per image
    would cost far more than the image itself.
    """
    body, _, index = path[len(SCHEME) :].rpartition("#")
    row, _, drawer = index.partition("/")
    if not path.startswith(SCHEME) or not body or not row.isdigit() or not drawer.isdigit():
        raise DatasetError(f"path: not an Omniglot record path, got {path!r}")
    images = _ARRAYS.get(body)
    if images is None:
        if not os.path.isfile(body):
            raise DatasetError(f"{body}: Omniglot file not found")
        with np.load(body) as data:
            images = data["images"]
        _ARRAYS[body] = images
    r, d = int(row), int(drawer)
    if r >= images.shape[0] or d >= images.shape[1]:
        raise DatasetError(f"path: {path!r} is outside the array of shape {images.shape[:2]}")
    pixels = np.where(images[r, d], np.uint8(255), np.uint8(0))
    return Image.fromarray(pixels).convert("RGB")
