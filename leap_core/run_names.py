"""What a run is called: the paper's method names, the long-tail setting, the dataset, and
the run name made of them (``market1501 <H20,S5> LEAP-CF seed0``), as MLflow, the sweep
tables and the service show them."""

from __future__ import annotations

from pathlib import Path

from leap_core.config import JobSpec


def method_label(spec: JobSpec) -> str:
    """The paper's name for the method (CosFace, LEAP-CV, LEAP-AF, …), the controls named
    after it (CosFace+noise, CosFace+matched-noise, LEAP-CF-shuffled), LDAM's margins
    (LDAM-CF, LEAP-CF+LDAM), the loss terms that follow (+LS0.1 label smoothing, +CB0.999
    class-balanced weights, -DRW when they start late, +LA1.0 logit adjustment), +PFC0.1 for
    Partial FC's class sampling, +CAS for class-aware sampling, and ``/paper`` when the
    paper's spread estimator is used."""
    leap = spec.method.leap
    head = spec.method.head
    base = {"normface": "NormFace", "cosface": "CosFace", "arcface": "ArcFace"}[head.kind]
    ldam = head.margin_profile == "ldam"
    if leap.mode == "off":
        label = f"LDAM-{base[0]}F" if ldam else base
    elif leap.mode == "constant":
        label = f"{base}+{'matched-' if leap.constant_classes == 'matched' else ''}noise"
    else:
        label = f"LEAP-{base[0]}{'V' if leap.mode == 'vanilla' else 'F'}"
        label += "-shuffled" if leap.mode == "shuffled" else ""
    if ldam and leap.mode != "off":
        label += "+LDAM"
    label += loss_suffix(spec)
    if head.sample_rate < 1:
        label += f"+PFC{head.sample_rate:g}"
    if spec.train.sampler.kind == "class_aware":
        label += "+CAS"
    return label + ("/paper" if leap.spread == "paper" and leap.measures_classes() else "")


def loss_suffix(spec: JobSpec) -> str:
    """``+LS0.1``, ``+CB0.999`` (``+CB0.999-DRW`` from a later epoch), ``+LA1.0``: the loss
    terms that are on, in that order."""
    loss = spec.method.loss
    parts = []
    if loss.label_smoothing:
        parts.append(f"+LS{float(loss.label_smoothing)}")
    if loss.class_balanced_beta is not None:
        late = "-DRW" if loss.reweight_start_epoch != 0 else ""
        parts.append(f"+CB{float(loss.class_balanced_beta)}{late}")
    if loss.logit_adjustment:
        parts.append(f"+LA{float(loss.logit_adjustment)}")
    return "".join(parts)


def long_tail_label(spec: JobSpec) -> str:
    """``<H20,S5>``, ``<H5000,T10000>``, ``exp-IF50`` or ``full``."""
    tail = spec.dataset.long_tail
    if spec.dataset.format == "synthetic" and tail.kind == "none":
        synth = spec.dataset.synthetic
        if synth.tail_images is not None:
            return f"<H{synth.head},S{synth.tail_images[0]}-{synth.tail_images[1]}>"
        return f"<H{synth.head},S{synth.tail_samples}>"
    if tail.kind == "reid":
        return f"<H{tail.head},S{tail.tail_samples}>"
    if tail.kind == "face":
        return f"<H{tail.head},T{tail.tail_classes}>"
    if tail.kind == "exponential":
        return f"exp-IF{tail.imbalance_factor:g}"
    return "full"


def dataset_label(spec: JobSpec) -> str:
    """The dataset's name: its format for the named benchmarks, else its folder's name
    (``faces_emore`` for MS1M in RecordIO, say)."""
    if spec.dataset.format in ("recordio", "folders") and spec.dataset.root:
        path = Path(spec.dataset.root)
        return (path.parent if path.suffix == ".rec" else path).name or spec.dataset.format
    return spec.dataset.format


def run_name(spec: JobSpec) -> str:
    """What the run is, e.g. ``market1501 <H20,S5> LEAP-CF seed0``."""
    return (
        f"{dataset_label(spec)} {long_tail_label(spec)} {method_label(spec)} seed{spec.train.seed}"
    )


def run_title(spec: JobSpec) -> str:
    """The run's name in MLflow and on its summary page: the job's name, then what the run
    is, each said once. A job named after what it is (the service names an unnamed job so,
    the demo prefixes it with ``demo``) is its name alone; an unnamed run is what it is."""
    what = run_name(spec)
    if not spec.name:
        return what
    if what in spec.name:
        return spec.name
    return f"{spec.name}: {what}"
