"""The training engine: the trainer loop, its data assembled from ``leap_core.data``
(``data_setup``), its world of ranks (``world``), evaluation and diagnostics, checkpoints
and hooks. The loop is the same at every world size: the criterion and the feature cloud
take the run's class shard."""
