"""The data layer: dataset readers, long-tail cuts, manifests, samplers, transforms, datasets.

Readers turn any supported layout into ``SplitListing`` records ``(path, pid, camid)``;
``long_tail`` cuts the training split into a ``LongTailManifest`` (spec §7); ``samplers``,
``transforms`` and ``datasets`` feed it to a trainer; ``synthetic`` writes the default dataset.

Names are imported lazily (PEP 562): ``from leap_core.data import reid_long_tail`` does not
pull in torch and torchvision, which keeps the ``leap`` command line quick to start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "ImageDataset": "datasets",
    "load_image": "datasets",
    "read_folders": "folders",
    "VerificationPair": "lfw",
    "VerificationPairs": "lfw",
    "read_lfw_pairs": "lfw",
    "cut_long_tail": "long_tail",
    "exponential_long_tail": "long_tail",
    "face_long_tail": "long_tail",
    "full_training_set": "long_tail",
    "reid_long_tail": "long_tail",
    "LongTailManifest": "manifest",
    "read_dukemtmc": "market1501",
    "read_market1501": "market1501",
    "read_msmt17": "msmt17",
    "default_omniglot_root": "omniglot",
    "omniglot_available": "omniglot",
    "read_omniglot": "omniglot",
    "FORMATS": "readers",
    "read_dataset": "readers",
    "RecordIOReader": "recordio",
    "read_recordio": "recordio",
    "write_recordio": "recordio",
    "SPLITS": "records",
    "DatasetError": "records",
    "Record": "records",
    "SplitListing": "records",
    "ClassAwareSampler": "samplers",
    "PKSampler": "samplers",
    "RandomSampler": "samplers",
    "SynthConfig": "synthetic",
    "SynthSummary": "synthetic",
    "generate_synthetic": "synthetic",
    "face_test_transform": "transforms",
    "face_train_transform": "transforms",
    "reid_test_transform": "transforms",
    "reid_train_transform": "transforms",
}

__all__ = [
    "FORMATS",
    "SPLITS",
    "ClassAwareSampler",
    "DatasetError",
    "ImageDataset",
    "LongTailManifest",
    "PKSampler",
    "RandomSampler",
    "Record",
    "RecordIOReader",
    "SplitListing",
    "SynthConfig",
    "SynthSummary",
    "VerificationPair",
    "VerificationPairs",
    "cut_long_tail",
    "default_omniglot_root",
    "exponential_long_tail",
    "face_long_tail",
    "face_test_transform",
    "face_train_transform",
    "full_training_set",
    "generate_synthetic",
    "load_image",
    "omniglot_available",
    "read_dataset",
    "read_dukemtmc",
    "read_folders",
    "read_lfw_pairs",
    "read_market1501",
    "read_msmt17",
    "read_omniglot",
    "read_recordio",
    "reid_long_tail",
    "reid_test_transform",
    "reid_train_transform",
    "write_recordio",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'leap_core.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"leap_core.data.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from leap_core.data.datasets import ImageDataset, load_image
    from leap_core.data.folders import read_folders
    from leap_core.data.lfw import VerificationPair, VerificationPairs, read_lfw_pairs
    from leap_core.data.long_tail import (
        cut_long_tail,
        exponential_long_tail,
        face_long_tail,
        full_training_set,
        reid_long_tail,
    )
    from leap_core.data.manifest import LongTailManifest
    from leap_core.data.market1501 import read_dukemtmc, read_market1501
    from leap_core.data.msmt17 import read_msmt17
    from leap_core.data.omniglot import default_omniglot_root, omniglot_available, read_omniglot
    from leap_core.data.readers import FORMATS, read_dataset
    from leap_core.data.recordio import RecordIOReader, read_recordio, write_recordio
    from leap_core.data.records import SPLITS, DatasetError, Record, SplitListing
    from leap_core.data.samplers import ClassAwareSampler, PKSampler, RandomSampler
    from leap_core.data.synthetic import SynthConfig, SynthSummary, generate_synthetic
    from leap_core.data.transforms import (
        face_test_transform,
        face_train_transform,
        reid_test_transform,
        reid_train_transform,
    )
