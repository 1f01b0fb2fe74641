"""The paired bootstrap of two variants on the same test images: known answers."""

from __future__ import annotations

import numpy as np
import pytest

from vaelab.stats.intervals import estimate
from vaelab.stats.paired import family_level, paired_difference


def faces(seeds: int = 3, images: int = 25, seed: int = 0) -> np.ndarray:
    """(seeds, images): a wide spread between images, shared by every seed; little between seeds."""
    rng = np.random.default_rng(seed)
    per_image = rng.uniform(0.0, 1.0, size=images)
    return per_image[None, :] + rng.normal(0.0, 0.002, size=(seeds, images))


def test_a_small_constant_offset_hidden_by_the_marginal_intervals_is_decided():
    a = faces()
    b = faces(seed=1) * 0 + a + 0.01  # the same images, 0.01 higher everywhere
    marginal_a, marginal_b = estimate(a), estimate(b)
    assert marginal_a.high > marginal_b.low, "the marginal intervals must overlap for this test"
    paired = paired_difference(a, b, resamples=2000)
    assert paired.direction == "lower"
    assert paired.high < 0
    assert paired.difference == pytest.approx(-0.01, abs=1e-3)
    assert paired.low <= paired.difference <= paired.high


def test_the_sign_flipped_offset_flips_the_verdict():
    a = faces()
    assert paired_difference(a + 0.01, a, resamples=2000).direction == "higher"
    assert paired_difference(a, a + 0.01, resamples=2000).direction == "lower"


def test_identical_sets_are_never_decided():
    a = faces()
    same = paired_difference(a, a.copy(), resamples=2000)
    assert same.direction == "undecided"
    assert same.difference == 0.0 and same.low < 0.0 < same.high  # seeds still resampled per side
    assert same.ratio == 1.0
    one_seed = paired_difference(a[:1], a[:1].copy(), resamples=2000)
    assert (one_seed.difference, one_seed.low, one_seed.high) == (0.0, 0.0, 0.0)


def test_a_rerun_gives_the_same_bytes_and_another_seed_another_interval():
    a, b = faces(), faces(seed=3)
    first = paired_difference(a, b, seed=7, resamples=1000)
    assert first == paired_difference(a, b, seed=7, resamples=1000)
    assert first != paired_difference(a, b, seed=8, resamples=1000)


def test_seeds_are_resampled_within_each_side():
    # One side's seeds disagree wildly: the interval must widen with them.
    a = faces()
    noisy = a + np.array([[-0.2], [0.0], [0.2]])
    assert paired_difference(noisy, a, resamples=2000).direction == "undecided"
    assert paired_difference(a + 0.01, a, resamples=2000).direction == "higher"


def test_the_ratio_interval_holds_the_ratio():
    a, b = faces() + 1.0, faces() + 1.1
    paired = paired_difference(a, b, resamples=2000)
    assert paired.ratio == pytest.approx(paired.mean_a / paired.mean_b)
    assert paired.ratio_low <= paired.ratio <= paired.ratio_high < 1.0


def test_under_no_difference_few_comparisons_are_decided():
    # iid sides: at level 0.95 about 5 % decided; the bound leaves room for the bootstrap's bias.
    rng = np.random.default_rng(0)
    decided = sum(
        paired_difference(
            rng.normal(size=(3, 40)), rng.normal(size=(3, 40)), seed=i, resamples=500
        ).direction
        != "undecided"
        for i in range(200)
    )
    assert decided / 200 <= 0.12


def test_a_family_controls_its_error_by_bonferroni():
    assert family_level(1) == pytest.approx(0.95)
    assert family_level(13) == pytest.approx(1 - 0.05 / 13)
    a = faces()
    wide = paired_difference(a + 0.01, a, level=family_level(13), resamples=4000)
    narrow = paired_difference(a + 0.01, a, level=0.95, resamples=4000)
    assert wide.low < narrow.low and wide.high > narrow.high
    with pytest.raises(ValueError, match="at least one"):
        family_level(0)


def test_mismatched_images_are_refused():
    with pytest.raises(ValueError, match="same images"):
        paired_difference(np.zeros((3, 5)), np.zeros((3, 6)))
    with pytest.raises(ValueError, match="finite"):
        paired_difference(np.full((1, 3), np.nan), np.zeros((1, 3)))


def test_unpaired_samples_are_resampled_each_on_its_own():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.0, 1.0, size=(3, 200)), rng.normal(0.5, 1.0, size=(3, 150))
    unpaired = paired_difference(a, b, joint=False, resamples=2000)
    assert unpaired.direction == "lower" and unpaired.images == 200
    # A spread shared item by item is only cancelled when the items are paired.
    shared = rng.uniform(0, 5, size=200) + rng.normal(0.0, 0.001, size=(3, 200))
    x, y = shared, shared + 0.05
    assert paired_difference(x, y, resamples=2000).direction == "lower"
    assert paired_difference(x, y, joint=False, resamples=2000).direction == "undecided"
