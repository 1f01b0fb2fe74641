"""Latent arithmetic from attribute groups (study 001: smiling woman − neutral woman +
neutral man = smiling man).

A group is the images whose index columns equal given 0/1 values; its code is the mean
latent of those images. An expression adds and subtracts group codes; the result is
decoded and compared with the decoded code of the group it should resemble.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from vaelab.config.evaluate_config import ArithmeticConfig, parse_expression
from vaelab.models import Autoencoder
from vaelab.models.inference import decode_all, encode_all

# Splits whose images may form groups: everything but the out-of-distribution set.
_IN_DISTRIBUTION = ("train", "val", "test")


@dataclass(frozen=True)
class ArithmeticResult:
    """One expression evaluated: its terms, their decoded group codes, the decoded sum and,
    when a group is named like the expression, its decoded code and the MSE to it."""

    name: str
    expression: str
    terms: list[tuple[int, str]]
    term_images: Tensor  # (T, C, H, W): each term's decoded group code
    result: Tensor  # (C, H, W): the decoded sum
    expected: Tensor | None  # (C, H, W): the decoded code of the group named like it
    mse_to_expected: float | None


def skip_reason(index: pd.DataFrame, config: ArithmeticConfig) -> str | None:
    """Why arithmetic cannot run on this index (missing attribute columns, empty groups), or
    None."""
    needed = sorted({column for condition in config.groups.values() for column in condition})
    missing = [column for column in needed if column not in index.columns]
    if missing:
        return (
            f"index.csv has no attribute column(s) {', '.join(missing)}: latent arithmetic "
            "needs 0/1 attribute columns such as CelebA's (set data.dataset: celeba, or edit "
            "evaluate.arithmetic.groups)"
        )
    used = {
        group
        for expression in config.expressions.values()
        for _sign, group in parse_expression(expression)
    }
    used |= {name for name in config.expressions if name in config.groups}
    empty = [
        group for group in sorted(used) if len(group_rows(index, config.groups[group], 1)) == 0
    ]
    if empty:
        return (
            f"group(s) {', '.join(empty)} match no image in index.csv; "
            "edit evaluate.arithmetic.groups"
        )
    return None


def group_rows(index: pd.DataFrame, condition: Mapping[str, int], limit: int) -> np.ndarray:
    """Row numbers of the first ``limit`` in-distribution images meeting every
    ``column == value``."""
    mask = index["split"].isin(_IN_DISTRIBUTION).to_numpy()
    for column, value in condition.items():
        mask = mask & (index[column].to_numpy() == value)
    return np.flatnonzero(mask)[:limit]


@torch.no_grad()
def run_arithmetic(
    model: Autoencoder,
    images: np.ndarray,
    index: pd.DataFrame,
    config: ArithmeticConfig,
    batch_size: int,
) -> list[ArithmeticResult]:
    """Evaluate every expression of ``config`` on ``images`` (all prepared images, aligned with
    ``index``)."""
    codes: dict[str, Tensor] = {}
    for name, condition in config.groups.items():
        rows = group_rows(index, condition, config.images_per_group)
        if len(rows):
            codes[name] = encode_all(model, images[rows], batch_size)["z"].mean(dim=0)
    results = []
    for name, expression in config.expressions.items():
        terms = parse_expression(expression)
        # A Tensor: parse_expression returns at least one term.
        total = cast(Tensor, sum(sign * codes[group] for sign, group in terms))
        decoded = decode_all(
            model, torch.stack([codes[group] for _s, group in terms] + [total]), batch_size
        ).cpu()
        expected = mse = None
        if name in codes:
            expected = decode_all(model, codes[name][None], batch_size).cpu()[0]
            mse = float((decoded[-1] - expected).square().mean())
        results.append(
            ArithmeticResult(name, expression, terms, decoded[:-1], decoded[-1], expected, mse)
        )
    return results
