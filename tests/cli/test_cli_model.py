"""Using a trained model from the command line: ``leap embed`` a folder into a gallery,
``leap search`` it, ``leap export`` the network as TorchScript and ONNX (checked against
PyTorch with onnxruntime)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from typer.testing import CliRunner

from leap_cli import app
from leap_core.data.datasets import load_image
from leap_core.data.transforms import test_transform as evaluation_transform
from leap_core.inference.gallery import Gallery
from leap_core.training.trainer import Trainer

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_root) -> tuple[Path, Trainer]:
    from leap_core.config import parse_spec
    from tests.training.conftest import TINY

    spec = parse_spec(
        {
            **TINY,
            "dataset": {**TINY["dataset"], "root": str(synthetic_root)},
            "train": {**TINY["train"], "epochs": 2},
            "eval": {"protocol": "none"},
        }
    )
    run_dir = tmp_path_factory.mktemp("model")
    trainer = Trainer(spec, run_dir)
    trainer.fit()
    return run_dir / "last.pt", trainer


def network_embedding(trainer: Trainer, path: Path) -> np.ndarray:
    """The trained network's L2-normalised embedding of one image, computed here."""
    image = evaluation_transform(trainer.spec)(load_image(str(path)))
    trainer.model.eval().cpu()
    with torch.no_grad():
        return torch.nn.functional.normalize(trainer.model(image[None]), dim=1)[0].numpy()


def test_embed_writes_every_image_with_the_networks_embedding(trained, synthetic_root, tmp_path):
    checkpoint, trainer = trained
    folder = synthetic_root / "query"
    result = runner.invoke(
        app, ["embed", str(checkpoint), str(folder), "--out", str(tmp_path / "g")]
    )
    assert result.exit_code == 0, result.output
    images = sorted(folder.glob("*.jpg"))
    assert f"embedded {len(images)} images (32-d) to {tmp_path / 'g.npz'}" in result.output
    gallery = Gallery.load(tmp_path / "g.npz")
    assert gallery.files == [path.name for path in images]
    assert gallery.embeddings.shape == (len(images), 32)
    assert np.allclose(np.linalg.norm(gallery.embeddings, axis=1), 1.0, atol=1e-5)
    assert np.allclose(gallery.embeddings[3], network_embedding(trainer, images[3]), atol=1e-5)
    assert gallery.checkpoint == checkpoint.resolve()


def test_search_finds_an_image_itself_first_then_by_falling_score(
    trained, synthetic_root, tmp_path
):
    checkpoint, trainer = trained
    folder = synthetic_root / "bounding_box_test"
    runner.invoke(app, ["embed", str(checkpoint), str(folder), "--out", str(tmp_path / "g.npz")])
    query = sorted(folder.glob("*.jpg"))[5]
    result = runner.invoke(
        app, ["search", str(tmp_path / "g.npz"), str(query), "-k", "4", "--json"]
    )
    assert result.exit_code == 0, result.output
    (answer,) = json.loads(result.stdout)
    scores = [match["score"] for match in answer["matches"]]
    assert answer["matches"][0]["file"] == query.name
    assert scores[0] == pytest.approx(1.0, abs=1e-5)
    assert scores == sorted(scores, reverse=True) and len(scores) == 4
    gallery = Gallery.load(tmp_path / "g.npz")
    expected = gallery.embeddings @ network_embedding(trainer, query)
    best = [gallery.files[i] for i in np.argsort(-expected, kind="stable")[:4]]
    assert [match["file"] for match in answer["matches"]] == best


def test_exported_networks_give_pytorchs_embeddings(trained, tmp_path):
    checkpoint, trainer = trained
    batch = torch.randn(5, 3, *trainer.spec.dataset.image_size)  # not the export's batch size
    trainer.model.eval().cpu()
    with torch.no_grad():
        expected = trainer.model(batch).numpy()
    script = runner.invoke(
        app, ["export", str(checkpoint), "--format", "torchscript", "--out", str(tmp_path / "m.pt")]
    )
    assert script.exit_code == 0, script.output
    traced = torch.jit.load(str(tmp_path / "m.pt"))
    assert np.allclose(traced(batch).detach().numpy(), expected, atol=1e-5)
    onnx = runner.invoke(app, ["export", str(checkpoint), "--format", "onnx"])
    assert onnx.exit_code == 0, onnx.output
    session = onnxruntime.InferenceSession(str(checkpoint.with_name("last.onnx")))
    (embeddings,) = session.run(["embeddings"], {"images": batch.numpy()})
    assert np.allclose(embeddings, expected, atol=1e-4)


def test_a_torchscript_export_beside_the_checkpoint_leaves_the_checkpoint_alone(trained):
    checkpoint, _ = trained
    before = checkpoint.read_bytes()
    script = runner.invoke(app, ["export", str(checkpoint), "--format", "torchscript"])
    assert script.exit_code == 0, script.output
    assert torch.jit.load(str(checkpoint.with_name("last.torchscript.pt"))) is not None
    assert checkpoint.read_bytes() == before


def test_bad_inputs_are_one_line_errors(trained, tmp_path):
    checkpoint, _ = trained
    cases = {
        (
            "export",
            str(checkpoint),
            "--format",
            "tflite",
        ): "--format must be one of onnx, torchscript",
        (
            "embed",
            str(checkpoint),
            str(tmp_path / "none"),
            "--out",
            "x",
        ): "is neither an image nor a folder",
        ("search", str(checkpoint), str(tmp_path)): "is not a gallery written by leap embed",
    }
    for args, message in cases.items():
        result = runner.invoke(app, list(args))
        assert result.exit_code == 2, result.output
        assert message in result.output
