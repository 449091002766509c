"""The LEAP feature cloud: centres, angle memories and per-class cloud variances."""

from leap_core.leap.cloud import ClassStats, FeatureCloud

__all__ = ["ClassStats", "FeatureCloud"]
