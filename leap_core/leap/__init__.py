"""The LEAP feature cloud: centres, angle memories and per-class cloud variances.

``cloud`` is the cloud itself (statistics, eqs. 6 and 9, the controls, the draws); ``classes``
its per-class bookkeeping over all classes (sizes, the split, what can be measured);
``memory`` the flat FIFO of angles; ``batching`` the per-class grouping of a batch;
``cloud_state`` its checkpoint in one layout for every world size. A new way of measuring a
class or a new control is a reading in ``LeapSpec`` (``leap_core.config``) and a branch of
:meth:`FeatureCloud.cloud_variance` or of the statistics update.
"""

from leap_core.leap.cloud import ClassStats, FeatureCloud

__all__ = ["ClassStats", "FeatureCloud"]
