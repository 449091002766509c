"""LEAP core: margin heads, the feature cloud and the criterion that joins them.

A plain PyTorch library: it imports no web, queue or database framework, no HTTP client,
nothing of the service (``jobs``, ``api``, ``worker``) and not the command line
(``leap_cli``), so it can be used on its own in any training script. A repository test
holds it to that by import analysis.
"""

__version__ = "0.1.0"
