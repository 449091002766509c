"""What decoding the evaluation images once saves: a run's scheduled evaluations with the
query and gallery images decoded once in memory (``train.cache_decoded_mb`` leaves room)
against reading and transforming them from disk at every evaluation (the budget only fits
the training set), interleaved in one process on the same model.

The tiny example (``examples/tiny_synthetic.yaml``, or SPEC) with ``eval.every_epochs: 1``
evaluates once per epoch: the script times ``--evaluations`` evaluations each way,
alternating, after one untimed evaluation each way (the one-time decoding is timed
separately and counted in), and prints the seconds per evaluation, the ratio, and the time
saved over a run's ``train.epochs`` evaluations. Both ways give the same embeddings
(checked).

    python benchmarks/eval_images.py [SPEC] [--evaluations 10]
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
    parser.add_argument("--evaluations", type=int, default=10)
    args = parser.parse_args()
    os.environ.setdefault("LEAP_HOME", str(ROOT / ".leap"))

    import torch

    from leap_core.data.evaluation_images import EvaluationImages
    from leap_core.spec_paths import load_spec
    from leap_core.training.data_setup import prepare_data
    from leap_core.training.evaluate import evaluate
    from leap_core.training.trainer import Trainer

    spec = load_spec(args.spec, ["eval.every_epochs=1"])
    data = prepare_data(spec)
    trainer = Trainer(spec, Path(tempfile.mkdtemp(prefix="leap-eval-images-")), data=data)
    cpu = torch.device("cpu")
    images = len(data.query) + len(data.gallery)
    print(
        f"{args.spec}: {len(data.query)} query + {len(data.gallery)} gallery images at "
        f"{spec.dataset.image_size[0]}x{spec.dataset.image_size[1]}, torch threads "
        f"{torch.get_num_threads()}, train.num_workers {spec.train.num_workers}"
    )
    ways = {"from disk": EvaluationImages(spec, 0), "decoded once": data.evaluation_images}
    first: dict[str, float] = {}
    metrics: dict[str, dict[str, float]] = {}
    for name, source in ways.items():
        data.evaluation_images = source
        start = time.perf_counter()
        metrics[name] = evaluate(trainer.model, data, spec, cpu).metrics
        first[name] = time.perf_counter() - start
    assert metrics["from disk"]["mAP"] == metrics["decoded once"]["mAP"], metrics
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.evaluations):
        for name, source in ways.items():
            data.evaluation_images = source
            start = time.perf_counter()
            evaluate(trainer.model, data, spec, cpu)
            times[name].append(time.perf_counter() - start)
    median = {name: sorted(t)[len(t) // 2] for name, t in times.items()}
    for name in ways:
        print(
            f"{name:14} first evaluation {first[name]:6.3f} s, then median {median[name]:6.3f} s "
            f"({images / median[name]:,.0f} images/s)"
        )
    runs = spec.train.epochs
    disk = runs * median["from disk"]
    memory = first["decoded once"] + (runs - 1) * median["decoded once"]
    ratio = median["decoded once"] / median["from disk"]
    print(f"per evaluation: decoded once / from disk = {ratio:.2f}")
    print(
        f"{runs} evaluations of a run (eval.every_epochs: 1): {disk:.1f} s from disk, "
        f"{memory:.1f} s decoded once (the decoding counted), {disk - memory:.1f} s saved"
    )


if __name__ == "__main__":
    main()
