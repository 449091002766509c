"""LEAP core: margin heads, the feature cloud and the criterion that joins them, with the
data, models, trainer, evaluation, sweeps and MLflow tracking around them.

A plain PyTorch library: it imports no web, queue or database framework, no HTTP client,
nothing of the service (``jobs``, ``api``, ``worker``) and not the command line
(``leap_cli``), so it can be used on its own in any training script. A repository test
holds it to that by import analysis, and finds no two of its modules importing each other.

Where things are, bottom first: ``config`` (the ``JobSpec``, the one description of a run)
with ``families`` (the head and backbone tables), ``schedules``, ``run_names`` and
``spec_paths``; ``heads`` (margins, one autograd node for the loss); ``leap`` (the feature
cloud); ``distributed`` (``ClassShard``: one process is one shard of all classes);
``losses`` (the criterion); ``data``, ``models``; ``training`` (the trainer); ``evaluation``,
``inference``, ``tracking``, ``sweeps``.
"""

__version__ = "0.1.0"
