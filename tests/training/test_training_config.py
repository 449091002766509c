"""JobSpec: paper defaults, validation errors naming field paths, overrides, labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from leap_core.config import JobSpec, SpecError, parse_spec
from leap_core.run_names import long_tail_label, method_label, run_name, run_title
from leap_core.spec_paths import apply_overrides, flatten, load_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_defaults_follow_the_paper_reid_setting():
    spec = JobSpec()
    assert spec.model.backbone == "resnet50" and spec.model.embedding_dim == 2048
    assert spec.model.bn_neck and spec.model.last_stride == 1
    assert spec.train.optimizer.kind == "adam" and spec.train.optimizer.lr == 3.5e-4
    assert spec.method.leap.gamma == 0.1 and spec.method.leap.P == 1
    assert spec.head_parameters() == (24.0, 0.2)  # CosFace re-ID: s = 24, m = 0.2


@pytest.mark.parametrize(
    "kind,fmt,expected",
    [
        ("arcface", "market1501", (16.0, 0.2)),
        ("cosface", "recordio", (64.0, 0.35)),
        ("arcface", "recordio", (64.0, 0.5)),
        ("normface", "market1501", (16.0, 0.0)),
    ],
)
def test_head_defaults_depend_on_protocol(kind, fmt, expected):
    spec = parse_spec(
        {"dataset": {"format": fmt, "root": "/data"}, "method": {"head": {"kind": kind}}}
    )
    assert spec.head_parameters() == expected


def test_explicit_head_parameters_win():
    spec = parse_spec({"method": {"head": {"kind": "arcface", "scale": 30, "margin": 0.3}}})
    assert spec.head_parameters() == (30.0, 0.3)


@pytest.mark.parametrize(
    "data,message",
    [
        (
            {"train": {"epochs": 0}},
            "train.epochs: Input should be greater than or equal to 1 (got 0)",
        ),
        (
            {"train": {"optimizer": {"lr": -1}}},
            "train.optimizer.lr: Input should be greater than 0",
        ),
        ({"model": {"backbon": "resnet18"}}, "model.backbon: Extra inputs are not permitted"),
        (
            {"model": {"backbone": "vgg"}},
            "model.backbone: Input should be 'resnet18', 'resnet50' or 'tiny_cnn' (got 'vgg')",
        ),
        (
            {"method": {"leap": {"mode": "vanilla"}}},
            "method.leap: threshold is required when mode is 'vanilla'",
        ),
        (
            {"method": {"leap": {"gamma": 1.5}}},
            "method.leap.gamma: Input should be less than or equal to 1 (got 1.5)",
        ),
        (
            {"dataset": {"format": "market1501"}},
            "dataset: root is required for format 'market1501'",
        ),
        (
            {"dataset": {"format": "synthetic", "long_tail": {"kind": "face", "head": 5}}},
            "dataset.long_tail: tail_classes is required for a 'face' long tail",
        ),
        (
            {"method": {"leap": {"mode": "full", "cloud_start_epoch": 60}}},
            "method.leap.cloud_start_epoch (60) must be below train.epochs (60)",
        ),
        ({"train": {"device": "tpu"}}, "train.device: String should match pattern"),
        # seeds reach numpy.random.seed (< 2**32); epochs and seeds fit 32-bit columns
        (
            {"train": {"seed": 2**31}},
            "train.seed: Input should be less than or equal to 2147483647 (got 2147483648)",
        ),
        (
            {"dataset": {"long_tail": {"seed": 2**32}}},
            "dataset.long_tail.seed: Input should be less than or equal to 2147483647",
        ),
        (
            {"dataset": {"synthetic": {"seed": 2**40}}},
            "dataset.synthetic.seed: Input should be less than or equal to 2147483647",
        ),
        (
            {"train": {"epochs": 2**31}},
            "train.epochs: Input should be less than or equal to 2147483647",
        ),
        (
            {"method": {"leap": {"mode": "constant"}}},
            "method.leap: constant_std is required when mode is 'constant'",
        ),
        (
            {"method": {"leap": {"mode": "full", "constant_std": 0.1}}},
            "method.leap: constant_std is only used when mode is 'constant' (mode is 'full')",
        ),
        (
            {"method": {"leap": {"mode": "full", "constant_classes": "matched"}}},
            "method.leap: constant_classes is only used when mode is 'constant' (mode is 'full')",
        ),
        (
            {"method": {"leap": {"spread": "loo"}}},
            "method.leap.spread: Input should be 'leave_one_out' or 'paper' (got 'loo')",
        ),
        (
            {"eval": {"class_size_bins": [3, 3, 6]}},
            "eval.class_size_bins: must be increasing positive class sizes, got [3, 3, 6]",
        ),
        (
            {"method": {"leap": {"offset": "per_class"}}},
            "method.leap.offset: Input should be 'per_logit', 'per_sample' or 'target_only'",
        ),
        (
            {"method": {"leap": {"center_update": "eq4"}}},
            "method.leap.center_update: Input should be 'center_loss' or 'literal'",
        ),
        (
            {"dataset": {"synthetic": {"tail_images": [5, 2]}}},
            "dataset.synthetic: tail_images must be [low, high] with 1 <= low <= high, got [5, 2]",
        ),
        (
            {"dataset": {"synthetic": {"head_images": [4, 30], "tail_samples": 5}}},
            "dataset.synthetic: head_images [4, 30] must start above the largest tail identity "
            "(5 images)",
        ),
        (
            {"method": {"head": {"kind": "normface", "margin_profile": "ldam"}}},
            "method: head.margin_profile 'ldam' sets a margin per class, but head.kind "
            "'normface' has no margin",
        ),
        (
            {"method": {"loss": {"logit_adjustment": 1.0, "class_balanced_beta": 0.999}}},
            "method.loss: logit_adjustment and class_balanced_beta both correct for the class "
            "prior (got 1.0 and 0.999)",
        ),
        (
            {"method": {"loss": {"reweight_start_epoch": 0.8}}},
            "method.loss: reweight_start_epoch is only used with class_balanced_beta (got 0.8",
        ),
        (
            {"method": {"loss": {"label_smoothing": 1.0}}},
            "method.loss.label_smoothing: Input should be less than 1 (got 1.0)",
        ),
        (
            {"method": {"loss": {"class_balanced_beta": 0.99, "reweight_start_epoch": 60}}},
            "spec: method.loss.reweight_start_epoch (60) must be below train.epochs (60)",
        ),
        (
            {"method": {"head": {"sample_rate": 0}}},
            "method.head.sample_rate: Input should be greater than 0 (got 0)",
        ),
        (
            {"method": {"head": {"sample_rate": 1.5}}},
            "method.head.sample_rate: Input should be less than or equal to 1 (got 1.5)",
        ),
    ],
)
def test_validation_errors_name_the_field_path(data, message):
    with pytest.raises(SpecError) as caught:
        parse_spec(data)
    assert message in str(caught.value)


def test_several_errors_are_all_reported_one_per_line():
    with pytest.raises(SpecError) as caught:
        parse_spec({"train": {"epochs": -1, "seed": -2}})
    lines = str(caught.value).splitlines()
    assert [line.split(":")[0] for line in lines] == ["train.epochs", "train.seed"]


def test_overrides_set_nested_fields_with_yaml_values():
    data = apply_overrides(
        {"train": {"epochs": 5}},
        [
            "train.epochs=7",
            "dataset.image_size=[64, 32]",
            "method.leap.mode=full",
            "train.grad_clip=null",
        ],
    )
    assert data == {
        "train": {"epochs": 7, "grad_clip": None},
        "dataset": {"image_size": [64, 32]},
        "method": {"leap": {"mode": "full"}},
    }
    with pytest.raises(SpecError, match=r"--set: expected path\.to\.field=value, got 'epochs'"):
        apply_overrides({}, ["epochs"])
    not_a_section = r"--set: train\.epochs\.x: epochs is not a section \(got 3\)"
    with pytest.raises(SpecError, match=not_a_section):
        apply_overrides({"train": {"epochs": 3}}, ["train.epochs.x=1"])


def test_load_spec_reports_missing_and_malformed_files(tmp_path):
    with pytest.raises(SpecError, match=r"spec file .*absent.yaml: No such file"):
        load_spec(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    bad.write_text("train:\n  epochs: 3\n   bad: [\n")
    with pytest.raises(SpecError) as raised:
        load_spec(bad)
    assert str(raised.value) == (
        f"spec file {bad}: not valid YAML (line 3, column 7: mapping values are not allowed here)"
    )


@pytest.mark.parametrize(
    "head,mode,label",
    [
        ("cosface", "off", "CosFace"),
        ("cosface", "vanilla", "LEAP-CV"),
        ("cosface", "full", "LEAP-CF"),
        ("arcface", "vanilla", "LEAP-AV"),
        ("arcface", "full", "LEAP-AF"),
        ("normface", "full", "LEAP-NF"),
        ("cosface", "constant", "CosFace+noise"),
        ("arcface", "constant", "ArcFace+noise"),
        ("cosface", "shuffled", "LEAP-CF-shuffled"),
    ],
)
def test_method_labels_use_the_paper_names(head, mode, label):
    std = 0.1 if mode == "constant" else None
    spec = parse_spec(
        {
            "method": {
                "head": {"kind": head},
                "leap": {"mode": mode, "threshold": 5, "constant_std": std},
            }
        }
    )
    assert method_label(spec) == label


@pytest.mark.parametrize(
    "leap,label",
    [
        ({"mode": "full", "spread": "paper"}, "LEAP-CF/paper"),
        ({"mode": "shuffled", "spread": "paper"}, "LEAP-CF-shuffled/paper"),
        (
            {"mode": "constant", "constant_std": 0.1, "constant_classes": "matched"},
            "CosFace+matched-noise",
        ),
        # The tail-only control uses no statistics, so the estimator is not part of its name.
        ({"mode": "constant", "constant_std": 0.1, "spread": "paper"}, "CosFace+noise"),
        ({"mode": "off", "spread": "paper"}, "CosFace"),
    ],
)
def test_method_labels_name_the_controls_and_the_papers_estimator(leap, label):
    assert method_label(parse_spec({"method": {"leap": leap}})) == label


@pytest.mark.parametrize(
    "method,label",
    [
        ({"loss": {"label_smoothing": 0.1}}, "CosFace+LS0.1"),
        ({"loss": {"class_balanced_beta": 0.999}}, "CosFace+CB0.999"),
        (
            {"loss": {"class_balanced_beta": 0.999, "reweight_start_epoch": 0.8}},
            "CosFace+CB0.999-DRW",
        ),
        ({"loss": {"logit_adjustment": 1}}, "CosFace+LA1.0"),
        ({"head": {"margin_profile": "ldam"}}, "LDAM-CF"),
        ({"head": {"kind": "arcface", "margin_profile": "ldam"}}, "LDAM-AF"),
        (
            {
                "head": {"margin_profile": "ldam"},
                "loss": {"class_balanced_beta": 0.999, "reweight_start_epoch": 0.8},
            },
            "LDAM-CF+CB0.999-DRW",
        ),
        (
            {
                "head": {"margin_profile": "ldam"},
                "leap": {"mode": "full", "spread": "paper"},
                "loss": {"label_smoothing": 0.1},
            },
            "LEAP-CF+LDAM+LS0.1/paper",
        ),
        ({"head": {"sample_rate": 0.1}}, "CosFace+PFC0.1"),
        (
            {
                "head": {"sample_rate": 0.25},
                "leap": {"mode": "full"},
                "loss": {"label_smoothing": 0.1},
            },
            "LEAP-CF+LS0.1+PFC0.25",
        ),
    ],
)
def test_method_labels_name_the_long_tail_methods(method, label):
    assert method_label(parse_spec({"method": method})) == label


def test_class_aware_sampling_is_named_after_the_loss_terms():
    spec = parse_spec(
        {
            "method": {"loss": {"label_smoothing": 0.1}},
            "train": {"sampler": {"kind": "class_aware"}},
        }
    )
    assert method_label(spec) == "CosFace+LS0.1+CAS"


def test_the_spread_defaults_to_leave_one_out_and_the_controls_measure_as_leap_does():
    leap = parse_spec({}).method.leap
    assert (leap.spread, leap.constant_classes) == ("leave_one_out", "tail")
    assert not leap.measures_classes()  # mode off
    matched = {"mode": "constant", "constant_std": 0.1, "constant_classes": "matched"}
    # A matched control measures the classes, so the literal eq. 4 is refused with random
    # batches as it is for LEAP itself.
    with pytest.raises(SpecError, match="center_update 'literal' cannot be used"):
        parse_spec(
            {
                "method": {"leap": {**matched, "center_update": "literal"}},
                "train": {"sampler": {"kind": "random", "batch_size": 64}},
            }
        )
    assert parse_spec({"method": {"leap": matched}}).method.leap.measures_classes()


def test_run_name_says_what_the_run_is():
    spec = parse_spec(
        {
            "dataset": {
                "format": "market1501",
                "root": "/d",
                "long_tail": {"kind": "reid", "head": 20, "tail_samples": 5},
            },
            "method": {"leap": {"mode": "full"}},
            "train": {"seed": 2},
        }
    )
    assert run_name(spec) == "market1501 <H20,S5> LEAP-CF seed2"


def test_a_runs_title_says_its_name_and_what_it_is_once_each():
    job = {
        "dataset": {
            "format": "market1501",
            "root": "/d",
            "long_tail": {"kind": "reid", "head": 20, "tail_samples": 5},
        },
        "method": {"leap": {"mode": "full"}},
    }
    what = "market1501 <H20,S5> LEAP-CF seed0"
    assert run_title(parse_spec(job)) == what  # unnamed: what it is
    assert run_title(parse_spec({**job, "name": "baseline"})) == f"baseline: {what}"
    assert run_title(parse_spec({**job, "name": what})) == what  # the service's default name
    assert run_title(parse_spec({**job, "name": f"demo {what}"})) == f"demo {what}"


def test_flatten_gives_dotted_params():
    flat = flatten(JobSpec())
    assert flat["method.leap.gamma"] == "0.1"
    assert flat["train.sampler.identities"] == "16"
    assert flat["dataset.image_size"] == "[256, 128]"


def test_json_schema_is_available_for_the_api():
    schema = JobSpec.model_json_schema()
    assert set(schema["properties"]) == {
        "name",
        "dataset",
        "model",
        "method",
        "train",
        "eval",
        "tracking",
        "resources",
    }


def test_every_example_spec_validates():
    examples = sorted(EXAMPLES.glob("*.yaml"))
    assert len(examples) >= 7
    for path in examples:
        load_spec(path)


def test_yaml_bare_off_means_no_cloud(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("method:\n  leap:\n    mode: off\n")
    assert load_spec(path).method.leap.mode == "off"


def test_a_synthetic_tail_range_is_named_in_the_long_tail_label():
    spec = parse_spec(
        {"dataset": {"synthetic": {"head": 10, "head_images": [150, 250], "tail_images": [2, 5]}}}
    )
    assert long_tail_label(spec) == "<H10,S2-5>"
    assert spec.dataset.synthetic.tail_cap() == 5


def test_the_cloud_start_may_be_a_fraction_of_training_so_short_runs_keep_it():
    """The README's ``leap submit examples/tiny_synthetic.yaml --set train.epochs=5``: the
    example starts the cloud at a quarter of training, epoch 5 of 20 and epoch 1 of 5."""
    example = Path(__file__).resolve().parents[2] / "examples" / "tiny_synthetic.yaml"
    assert load_spec(example).method.leap.start_epoch(20) == 5
    short = load_spec(example, ["train.epochs=5"])
    assert (short.method.leap.cloud_start_epoch, short.method.leap.start_epoch(5)) == (0.25, 1)
    assert load_spec(example, ["method.leap.cloud_start_epoch=3"]).method.leap.start_epoch(20) == 3
    assert (
        load_spec(
            example, ["method.leap.cloud_start_epoch=0.33", "train.epochs=60"]
        ).method.leap.start_epoch(60)
        == 20
    )
    for bad in ("1.5", "-1", "x"):
        with pytest.raises(SpecError, match="cloud_start_epoch: must be an epoch"):
            load_spec(example, [f"method.leap.cloud_start_epoch={bad}"])
    with pytest.raises(SpecError, match=r"give it as a fraction of training \(e\.g\. 0\.25\)"):
        load_spec(example, ["method.leap.cloud_start_epoch=20", "train.epochs=5"])


def test_resources_devices_defaults_to_one_and_names_itself_when_bad():
    assert parse_spec({}).resources.devices == 1
    assert parse_spec({"resources": {"devices": 4}}).resources.devices == 4
    with pytest.raises(SpecError, match=r"resources\.devices"):
        parse_spec({"resources": {"devices": 0}})
