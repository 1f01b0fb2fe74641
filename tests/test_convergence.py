"""The convergence check: known answers on made-up loss curves."""

from __future__ import annotations

import numpy as np
import pytest

from vaelab.train.convergence import check, summarise


def test_a_curve_still_falling_steeply_is_not_converged():
    losses = np.linspace(966, 372, 120)  # the σ-VAE's straight line before its σ had its own lr
    record = check(losses)
    assert not record["converged"] and record["window"] == 12
    assert record["slope_high"] < 0 and record["drop"] == pytest.approx(0.13, abs=0.02)


def test_a_flat_or_slightly_falling_curve_is_converged():
    rng = np.random.default_rng(0)
    flat = 640 + rng.normal(0, 1.0, 120)
    assert check(flat)["converged"]
    # Significant, but only 0.2 % over the window: below the 1 % threshold.
    slight = 646 - 0.1 * np.arange(120) + rng.normal(0, 0.05, 120)
    record = check(slight)
    assert record["slope_high"] < 0 and record["converged"]


def test_a_noisy_drop_is_not_a_trend():
    losses = [700, 690, 650, 600, 640, 610, 650, 620, 600, 640]
    assert check(losses)["converged"]  # window 3: the slope's interval spans zero


def test_too_few_epochs_cannot_be_judged():
    assert check([3.0, 2.0])["converged"] and "too few" in check([3.0, 2.0])["note"]


def test_a_variant_is_judged_on_its_mean_curve_with_each_replicate_recorded():
    rng = np.random.default_rng(1)
    # One replicate wanders down at the end, another up: the mean is flat.
    down = 600 + np.r_[np.zeros(36), [0, -10, -20, -30]] + rng.normal(0, 0.5, 40)
    up = 600 + np.r_[np.zeros(36), [0, 10, 20, 30]] + rng.normal(0, 0.5, 40)
    records = {0: check(down), 1: check(up)}
    summary = summarise((down + up) / 2, records)
    assert summary["converged"] and not records[0]["converged"]
    assert set(summary["seeds"]) == {"0", "1"} and summary["note"] == ""
    falling = summarise(np.linspace(900, 500, 40), {0: check(np.linspace(900, 500, 40))})
    assert not falling["converged"]
    assert falling["note"].startswith("validation loss (mean over seeds) still falling")
