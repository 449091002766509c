"""Generated datasets, made once: where a spec's synthetic set lives, and its generation
under a lock so that two processes asking at once share one copy.

Generation happens in a temporary sibling folder renamed into place at the end, so an
interrupted run never leaves a half-written dataset that a later run would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from leap_core.data.synthetic import SynthConfig, generate_synthetic
from leap_core.home import leap_home
from leap_core.locks import file_lock

if TYPE_CHECKING:
    from leap_core.config import DatasetSpec

#: Marker written last into a generated synthetic dataset; a folder without it is incomplete.
SYNTHETIC_DONE = ".leap-synthetic-complete"


def default_data_home() -> Path:
    """Where generated datasets are cached: ``$LEAP_HOME/data`` (default ``.leap/data``)."""
    return leap_home() / "data"


def synthetic_root(spec: DatasetSpec) -> Path:
    """The folder of the synthetic dataset described by ``spec``, named by its settings so
    that different settings never share a folder."""
    if spec.root is not None:
        return Path(spec.root)
    settings = json.dumps(spec.synthetic.model_dump(), sort_keys=True)
    digest = hashlib.sha256(settings.encode()).hexdigest()[:12]
    return default_data_home() / f"synthetic-{digest}"


def ensure_synthetic(spec: DatasetSpec, progress: Callable[[int, int], None] | None = None) -> Path:
    """Generate the synthetic dataset unless a complete copy exists; returns its root.

    Generation happens in a temporary sibling folder renamed into place at the end, so an
    interrupted run never leaves a half-written dataset that a later run would trust. Two
    processes asking at once (two workers starting their first jobs on a fresh machine)
    take turns on a lock file beside the root: the first generates, the second finds the
    copy complete. A complete copy is never deleted or replaced, even by a generator that
    did not see the lock (another machine on a shared folder): that one discards its own.
    """
    root = synthetic_root(spec)
    if (root / SYNTHETIC_DONE).is_file():
        return root
    with file_lock(root.parent / f".{root.name}.lock"):
        if (root / SYNTHETIC_DONE).is_file():  # made while this process waited
            return root
        staging = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
        try:
            generate_synthetic(staging / "data", _synth_config(spec), progress=progress)
            (staging / "data" / SYNTHETIC_DONE).write_text(json.dumps(spec.synthetic.model_dump()))
            install_generated(staging / "data", root)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return root


def _synth_config(spec: DatasetSpec) -> SynthConfig:
    """The generator's settings: the spec's fields are the generator's own names."""
    return SynthConfig(**spec.synthetic.model_dump())


def install_generated(generated: Path, root: Path) -> bool:
    """Move a complete generated copy to ``root``; returns whether it was installed. A
    complete copy already there is kept as it is (readers may be listing it), and the new
    one is left for the caller to discard. Only an incomplete leftover (no marker: an
    interrupted generation from before the staging folders) is replaced."""
    if (root / SYNTHETIC_DONE).is_file():
        return False
    if root.exists():
        shutil.rmtree(root)
    os.replace(generated, root)
    return True
