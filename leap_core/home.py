"""The one folder for a machine's local LEAP state when nothing else is configured.

``$LEAP_HOME``, by default ``.leap`` in the working directory: the embedded MLflow store,
generated datasets, local runs and sweeps, and the embedded service's databases and logs.
Everything that defaults to a place on disk derives it from :func:`leap_home`, so one
variable moves all of it.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = ".leap"


def leap_home() -> Path:
    """``$LEAP_HOME`` (default ``.leap``), absolute."""
    return Path(os.environ.get("LEAP_HOME", DEFAULT_HOME)).resolve()
