"""Latent arithmetic on attribute groups (study 001: smiling woman − neutral woman + neutral
man)."""

from __future__ import annotations

import torch

from vaelab import figures
from vaelab.evaluate.context import Context
from vaelab.evaluate.latent_arithmetic import run_arithmetic, skip_reason
from vaelab.evaluate.result import Result
from vaelab.models.inference import to_numpy


def arithmetic(ctx: Context) -> Result:
    """Each expression of ``arithmetic`` as a note (with the MSE of its decoded result to the
    decoded group it should resemble) and a figure row: the terms, the result, the expected
    group. Only a note saying why when the index lacks the attribute groups."""
    config = ctx.settings.arithmetic
    reason = skip_reason(ctx.data.index, config)
    if reason is not None:
        return Result(notes={"arithmetic": reason})
    if not ctx.draw:  # a figure and its note, of each replicate that draws
        return Result()
    results = run_arithmetic(ctx.model, ctx.data.images, ctx.data.index, config, ctx.batch_size)
    rows = []
    for result in results:
        row = [*result.term_images, result.result] + (
            [result.expected] if result.expected is not None else []
        )
        rows.append(to_numpy(torch.stack(row)))
    columns = [f"{'+' if sign > 0 else '−'} {group}" for sign, group in results[0].terms] + [
        "= result",
        "expected",
    ]
    figure = figures.image_rows(
        rows,
        title=f"{ctx.variant} (seed {ctx.replicate}): latent arithmetic (study 001)",
        row_labels=[result.name for result in results],
        col_labels=columns,
    )
    note = "; ".join(
        f"{r.name} = {r.expression}"
        + (
            f": MSE to the decoded '{r.name}' group {r.mse_to_expected:.5f}"
            if r.mse_to_expected is not None
            else ""
        )
        for r in results
    )
    return Result(notes={"arithmetic": note}, figures={"arithmetic.png": figure})
