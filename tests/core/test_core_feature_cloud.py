"""Feature cloud: centres (eq. 4), angle memories (eq. 5), cloud variances (eqs. 6, 9)."""

from __future__ import annotations

import collections
import io
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from leap_core.leap import FeatureCloud
from leap_core.leap.batching import group_by_class


def unit(angle: float) -> list[float]:
    return [math.cos(angle), math.sin(angle)]


def write_angles(cloud: FeatureCloud, per_class: dict[int, list[float]]) -> None:
    """Script a cloud's memories with known angles (bypassing the centre computation)."""
    labels = [c for c, angles in per_class.items() for _ in angles]
    angles = [a for values in per_class.values() for a in values]
    labels_t = torch.tensor(labels)
    cloud.memory.write(torch.tensor(angles), labels_t, group_by_class(labels_t))


@pytest.mark.parametrize("center_update", ["literal", "center_loss"])
def test_centres_follow_equation_4_in_both_readings(center_update):
    gamma = 0.3
    # literal: the batch mean weighs 1 - γ; centre-loss reading: it weighs γ.
    weight = 1 - gamma if center_update == "literal" else gamma
    cloud = FeatureCloud([4, 4, 4], 2, gamma=gamma, center_update=center_update)
    batches = [  # (features, labels); feature norms vary, centres use normalised features
        ([[2.0, 0.0], [0.0, 5.0], [0.0, 1.0]], [0, 0, 1]),  # first sightings of 0 and 1
        ([[1.0, 1.0], [3.0, 0.0]], [0, 2]),  # 0 again, 2 first, 1 absent
        ([[0.0, -2.0]], [1]),  # 1 again
    ]
    expected = np.zeros((3, 2))
    seen = [False, False, False]
    for features, labels in batches:
        cloud.update(torch.tensor(features), torch.tensor(labels))
        units = np.array(features) / np.linalg.norm(features, axis=1, keepdims=True)
        for c in sorted(set(labels)):
            b = units[np.array(labels) == c].mean(axis=0)
            expected[c] = weight * b + (1 - weight) * expected[c] if seen[c] else b
            seen[c] = True
        np.testing.assert_allclose(cloud.centres.numpy(), expected, atol=1e-6)
    # Spelled out for class 0: b1 = ((1,0)+(0,1))/2, b2 = (1,1)/√2.
    b1, b2 = np.array([0.5, 0.5]), np.array([1, 1]) / math.sqrt(2)
    literal = 0.7 * b2 + 0.3 * b1
    slow = 0.3 * b2 + 0.7 * b1
    np.testing.assert_allclose(
        cloud.centres[0].numpy(), literal if center_update == "literal" else slow, atol=1e-6
    )
    assert cloud.seen.tolist() == [True, True, True]


def test_angles_are_measured_to_the_updated_centre():
    cloud = FeatureCloud([5, 5], 2, spread="paper")
    # Class 0 at angles ±0.4 around the x axis: the centre is on the x axis and both
    # angles are 0.4; class 1 once, at its own centre: angle 0.
    features = torch.tensor([unit(0.4), unit(-0.4), [0.0, 2.0]])
    cloud.update(features, torch.tensor([0, 0, 1]))
    torch.testing.assert_close(cloud.memory.stored(0), torch.tensor([0.4, 0.4]), atol=1e-5, rtol=0)
    assert cloud.memory.stored(1).tolist() == pytest.approx([0.0], abs=2e-3)
    stats = cloud.class_stats()
    assert stats.count.tolist() == [2, 1]
    assert stats.mean[0].item() == pytest.approx(0.4, abs=1e-5)
    assert stats.variance[0].item() == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(stats.variance[1].item())  # one angle: no statistics yet


def test_fifo_keeps_exactly_the_newest_k_times_p_angles():
    cloud = FeatureCloud([3, 2], 2, P=1)
    write_angles(cloud, {0: [0.1, 0.2]})
    write_angles(cloud, {0: [0.3, 0.4], 1: [0.9]})
    torch.testing.assert_close(cloud.memory.stored(0), torch.tensor([0.2, 0.3, 0.4]))
    # One batch with more samples of a class than it keeps: the newest ones stay.
    write_angles(cloud, {0: [0.5, 0.6, 0.7, 0.8], 1: [1.0, 1.1, 1.2]})
    torch.testing.assert_close(cloud.memory.stored(0), torch.tensor([0.6, 0.7, 0.8]))
    torch.testing.assert_close(cloud.memory.stored(1), torch.tensor([1.1, 1.2]))
    stats = cloud.class_stats()
    assert stats.mean[0].item() == pytest.approx(0.7, abs=1e-6)
    assert stats.variance[0].item() == pytest.approx(0.01, abs=1e-6)  # ((.1)²·2)/2
    assert stats.variance[1].item() == pytest.approx(0.005, abs=1e-6)  # ((.05)²·2)/1


def test_memory_capacity_scales_with_p():
    cloud = FeatureCloud([3, 4, 1], 2, P=2.5)
    assert cloud.memory.capacity.tolist() == [8, 10, 3]  # ceil(3·2.5), 4·2.5, ceil(2.5)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=12), min_size=1, max_size=8),
    st.sampled_from([1, 2, 3]),
)
def test_memory_matches_a_deque_per_class(batches, p):
    counts = [1, 2, 3, 5]
    cloud = FeatureCloud(counts, 2, P=p)
    reference = {c: collections.deque(maxlen=counts[c] * p) for c in range(4)}
    value = 0.0
    for labels in batches:
        angles = []
        for c in labels:
            value += 0.01
            angles.append(value)
            reference[c].append(value)
        labels_t = torch.tensor(labels)
        cloud.memory.write(torch.tensor(angles), labels_t, group_by_class(labels_t))
    for c in range(4):
        stored = cloud.memory.stored(c).tolist()
        assert stored == pytest.approx(list(reference[c]), abs=1e-6)
        # The memory stores float32 angles and reduces them in float64.
        values = np.array(reference[c], dtype=np.float32).astype(np.float64)
        mean, var = cloud.class_stats().mean[c].item(), cloud.class_stats().variance[c].item()
        if values.size:
            assert mean == pytest.approx(values.mean(), abs=1e-6)
        if values.size >= 2:
            assert var == pytest.approx(values.var(ddof=1), abs=1e-9)
        else:
            assert math.isnan(var)


# Scripted statistics shared by the two cloud-variance tests:
# class : K  : angles            : variance
#   0   : 10 : 0.1 0.3 0.5       : 0.04
#   1   :  8 : 0.2 0.6           : 0.08
#   2   :  3 : 0.1 0.2           : 0.005
#   3   :  3 : 0.3               : none (one angle)
#   4   :  2 : 0.5 0.9           : 0.08
COUNTS = [10, 8, 3, 3, 2]
ANGLES = {0: [0.1, 0.3, 0.5], 1: [0.2, 0.6], 2: [0.1, 0.2], 3: [0.3], 4: [0.5, 0.9]}


def test_full_cloud_variance_follows_equation_9():
    cloud = FeatureCloud(COUNTS, 2, mode="full", spread="paper")
    write_angles(cloud, ANGLES)
    # σ² = (9·0.04 + 7·0.08 + 2·0.005 + 1·0.08) / (9 + 7 + 2 + 1) = 1.01 / 19
    overall = 1.01 / 19
    expected = [overall - 0.04, 0.0, overall - 0.005, 0.0, 0.0]
    # Angles are stored in float32, so the statistics carry ~1e-8 of rounding.
    np.testing.assert_allclose(cloud.cloud_variance().numpy(), expected, atol=1e-7)


def test_vanilla_cloud_variance_follows_equation_6():
    cloud = FeatureCloud(COUNTS, 2, mode="vanilla", threshold=5, spread="paper")
    write_angles(cloud, ANGLES)
    # Head (K > 5): classes 0 and 1; σ_h² = (0.04 + 0.08)/2 = 0.06, μ_h = (0.3 + 0.4)/2.
    mu_h, var_h = cloud.head_statistics()
    assert (mu_h, var_h) == (pytest.approx(0.35), pytest.approx(0.06))
    # Tail: class 2 gets 0.06 − 0.005; class 3 has no statistics; class 4 is above σ_h².
    np.testing.assert_allclose(cloud.cloud_variance().numpy(), [0, 0, 0.055, 0, 0], atol=1e-7)


def test_vanilla_has_no_cloud_until_a_head_class_has_statistics():
    cloud = FeatureCloud(COUNTS, 2, mode="vanilla", threshold=5)
    write_angles(cloud, {0: [0.1], 2: [0.1, 0.2]})
    assert cloud.cloud_variance().tolist() == [0.0] * 5


def test_sampled_alpha_has_the_class_variance_and_is_zero_for_head_classes():
    cloud = FeatureCloud(COUNTS, 2, mode="full", seed=7)
    write_angles(cloud, ANGLES)
    variance = cloud.cloud_variance()
    labels = torch.tensor([0] * 2000 + [1] * 10 + [2] * 2000)
    alpha = cloud.sample_alpha(labels)
    assert alpha.shape == (4010, 5) and alpha.dtype == torch.float32
    assert not alpha.requires_grad
    assert torch.count_nonzero(alpha[2000:2010]) == 0  # class 1: σ_1² above σ², no cloud
    for rows, cls in ((slice(0, 2000), 0), (slice(2010, 4010), 2)):
        draws = alpha[rows].double()
        # 10,000 draws: the sample variance has a relative standard error of √(2/10⁴) ≈ 1.4%;
        # 5% is over three standard errors. The mean's standard error is σ/100.
        assert draws.var().item() == pytest.approx(variance[cls].item(), rel=0.05)
        assert abs(draws.mean().item()) < 4 * math.sqrt(variance[cls].item()) / 100


def test_update_every_skips_the_calls_in_between():
    cloud = FeatureCloud([50, 50], 2, update_every=3, spread="paper")
    features, labels = torch.tensor([unit(0.1), unit(0.2)]), torch.tensor([0, 1])
    done = [cloud.update(features, labels) for _ in range(7)]
    assert done == [True, False, False, True, False, False, True]
    assert cloud.memory.written.tolist() == [3, 3]
    assert int(cloud.calls) == 7


def test_state_dict_round_trip_gives_identical_next_draws():
    torch.manual_seed(0)
    cloud = FeatureCloud([20, 20, 3, 3], 4, seed=11)
    for _ in range(5):
        cloud.update(torch.randn(16, 4), torch.randint(0, 4, (16,)))
    labels = torch.tensor([2, 3, 0, 2])
    cloud.sample_alpha(labels)  # advance the generator past its seed
    buffer = io.BytesIO()
    torch.save(cloud.state_dict(), buffer)
    buffer.seek(0)
    restored = FeatureCloud([20, 20, 3, 3], 4, seed=0)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.count_nonzero(cloud.cloud_variance()) > 0
    for _ in range(3):
        assert torch.equal(cloud.sample_alpha(labels), restored.sample_alpha(labels))
    features, batch_labels = torch.randn(8, 4), torch.randint(0, 4, (8,))
    cloud.update(features, batch_labels)
    restored.update(features, batch_labels)
    assert torch.equal(cloud.memory.angles, restored.memory.angles)
    assert torch.equal(cloud.centres, restored.centres)


def test_features_equal_to_their_centre_give_angle_zero_not_nan():
    cloud = FeatureCloud([4], 3)
    features = torch.tensor([[1.0, 0.0, 0.0]] * 3)
    cloud.update(features, torch.tensor([0, 0, 0]))
    stored = cloud.memory.stored(0)
    assert torch.isfinite(stored).all()
    assert stored.max().item() < 2e-3  # arccos(1 − 1e-6) ≈ 1.4e-3


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"class_counts": [3, 0, 2]}, r"class_counts must all be >= 1, got 0 at index 1"),
        ({"class_counts": []}, "class_counts must be a non-empty"),
        ({"class_counts": [2.5, 3]}, "class_counts must hold integers"),
        ({"mode": "vanilla"}, "threshold is required when mode is 'vanilla'"),
        (
            {"mode": "hybrid"},
            r"mode: Input should be 'off', 'vanilla', 'full', 'constant' or 'shuffled' "
            r"\(got 'hybrid'\)",
        ),
        ({"mode": "off"}, "mode must not be 'off' for a feature cloud"),
        ({"mode": "vanilla", "threshold": 100}, "threshold=100.0 leaves no head class"),
        ({"mode": "vanilla", "threshold": 1}, "threshold=1.0 leaves no tail class"),
        ({"mode": "constant", "threshold": 2}, "constant_std is required when mode is 'constant'"),
        (
            {"mode": "constant", "constant_std": 0.0, "threshold": 2},
            r"constant_std: Input should be greater than 0 \(got 0.0\)",
        ),
        (
            {"mode": "constant", "constant_std": 0.1, "threshold": 10},
            "threshold=10.0 leaves no head class",
        ),
        ({"center_update": "both"}, "center_update: Input should be 'center_loss' or 'literal'"),
        (
            {"offset": "per_row"},
            "offset: Input should be 'per_logit', 'per_sample' or 'target_only'",
        ),
        ({"single_slot": "skip"}, r"single_slot: Input should be .* \(got 'skip'\)"),
        ({"spread": "loo"}, r"spread: Input should be 'leave_one_out' or 'paper' \(got 'loo'\)"),
        (
            {"head": [True, False]},
            r"head must be 3 booleans, got dtype torch.bool and shape \(2,\)",
        ),
        ({"P": 0}, r"P: Input should be greater than 0 \(got 0\)"),
        ({"P": float("nan")}, r"P: Input should be greater than 0 \(got nan\)"),
        ({"gamma": -0.1}, r"gamma: Input should be greater than or equal to 0 \(got -0.1\)"),
        ({"gamma": 1.5}, r"gamma: Input should be less than or equal to 1 \(got 1.5\)"),
        ({"update_every": 0}, r"update_every: Input should be greater than or equal to 1"),
        ({"cloud_samples": 0}, r"cloud_samples: Input should be greater than or equal to 1"),
        ({"embedding_dim": -4}, "embedding_dim must be a positive integer, got -4"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, message):
    arguments = {"class_counts": [10, 3, 2], "embedding_dim": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        FeatureCloud(**arguments)


def test_update_and_sampling_reject_bad_batches():
    cloud = FeatureCloud([3, 3], 4)
    with pytest.raises(ValueError, match=r"features must have shape \(batch, 4\)"):
        cloud.update(torch.randn(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\), got label -1"):
        cloud.update(torch.randn(2, 4), torch.tensor([0, -1]))
    with pytest.raises(ValueError, match=r"labels must have shape"):
        cloud.sample_alpha(torch.tensor([[0, 1]]))
