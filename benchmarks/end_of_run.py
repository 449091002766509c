"""How much of a small run's wall time goes to the work after its last epoch.

Trains ``examples/tiny_synthetic.yaml`` (or SPEC) with the MLflow hook, as ``leap train``
does, into a scratch ``LEAP_HOME``, and splits the wall time at the end of the last epoch's
checkpoint: before it, training and the scheduled evaluations; after it, the end-of-run
work (diagnostics on a bounded sample of training images, the summary, plots, checkpoint
and model upload). Prints both and the share, against the goal of 10 %.

    python benchmarks/end_of_run.py [SPEC] [--set field=value ...]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default=str(ROOT / "examples" / "tiny_synthetic.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="leap-end-of-run-"))
    os.environ["LEAP_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)

    from leap_core.run_names import run_name
    from leap_core.spec_paths import load_spec
    from leap_core.tracking.mlflow_hook import MLflowHook
    from leap_core.training.hooks import Hook
    from leap_core.training.trainer import Trainer

    marks: dict[str, float] = {}

    class Clock(Hook):
        def on_start(self, trainer: Trainer) -> None:
            marks["start"] = time.perf_counter()

        def on_checkpoint(self, trainer: Trainer, path: Path) -> None:
            marks["last epoch"] = time.perf_counter()

    spec = load_spec(args.spec, args.overrides)
    trainer = Trainer(spec, home / "run", [Clock(), MLflowHook(log_every=10)])
    trainer.fit()
    done = time.perf_counter()
    training = marks["last epoch"] - marks["start"]
    after = done - marks["last epoch"]
    print(f"run: {run_name(spec)}, {spec.train.epochs} epochs, {trainer.global_step} steps")
    print(f"{'training and scheduled evaluation':40} {training:8.1f} s")
    print(f"{'end-of-run work':40} {after:8.1f} s")
    share = after / (training + after)
    print(f"{'end-of-run share of the run':40} {share:8.1%}   (goal: at most 10 %)")


if __name__ == "__main__":
    main()
