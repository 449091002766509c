"""Sweeps: a grid of long-tail settings × methods × seeds run as training jobs, summarised
in the paper's table format (``leap sweep``)."""

from leap_core.sweeps.grid import Cell, expand
from leap_core.sweeps.sweepfile import SweepError, SweepFile, load_sweep, parse_sweep

__all__ = ["Cell", "SweepError", "SweepFile", "expand", "load_sweep", "parse_sweep"]
