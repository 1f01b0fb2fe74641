"""The ``chain`` stage (study 000): feed a VAE's reconstructions through an AE ``passes``
times and record, per pass, the blur metrics and how far the colours drifted.

Writes ``metrics/detail/chain.json`` (one entry per pass), ``metrics/chain.json`` (its
headline: the last pass's sharpness and MSE to the inputs, keyed as an evaluation's ``sharp``
and ``mse``), ``metrics/chain.csv`` (every pass, as a DVC plot) and ``reports/chain/``: the
images pass by pass, sharpness and MSE to the inputs per pass, and (colour images only) the
colour drift. The first replicate (params.seed) of each of the two variants is chained.

The test split streams through batch by batch (``evaluate.batch_size``): each batch goes
through the VAE and every AE pass, and only each pass's running aggregates stay (one number
per image per metric, the squared error's sum, the first ``show`` images), so the memory the
chain needs does not grow with the test split.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vaelab import figures
from vaelab.config import Params
from vaelab.config.evaluate_config import ChainConfig
from vaelab.data.prepared_data import load_prepared
from vaelab.io.atomic import atomic_directory, atomic_file
from vaelab.io.metric_files import headline_of, metric_files
from vaelab.kernels import in_force
from vaelab.measures.headline import CHAIN_MSE, CHAIN_SHARP
from vaelab.measures.image_measures import PerImage, blur_metrics, colour_distances
from vaelab.models import Autoencoder
from vaelab.models.inference import batches, model_device, to_numpy
from vaelab.models.replicates import load_variant
from vaelab.models.saved import check_fits

log = logging.getLogger("vaelab.chain")

SKIPPED_REASON = "evaluate.chain is null in params.yaml: no VAE/AE pair to chain"
CSV_COLUMNS = [
    "pass",
    "images",
    "laplacian_var",
    "laplacian_var_norm",
    "hf_energy",
    "blur_effect",
    "mse_to_input",
]
# Colour drift means something only for colour images.
COLOUR_COLUMNS = ["colour_shift_from_input", "colour_shift_from_vae"]


@torch.no_grad()
def run_chain(
    params: Params,
    *,
    prepared: Path = Path("data/prepared"),
    models_root: Path = Path("models"),
    metrics_root: Path = Path("metrics"),
    reports_root: Path = Path("reports"),
) -> dict[str, Any]:
    """Chain the VAE and the AE of ``evaluate.chain`` over the test split and write the
    chain's metrics, table and figures; returns the metrics, one entry per pass."""
    settings = params.evaluate.chain
    if settings is None:
        return write_skipped(SKIPPED_REASON, metrics_root, reports_root)
    vae, ae, test = load_chain(params, settings, prepared, models_root)
    show = params.evaluate.show
    names = [
        "input",
        settings.vae,
        *[f"{settings.ae} x{step}" for step in range(1, settings.passes + 1)],
    ]
    rgb = test.shape[-1] == 3
    aggregates = stream_passes(vae, ae, test, names, params.evaluate.batch_size, show=show)
    rows = pass_rows(aggregates, rgb=rgb)
    metrics = {
        f"pass_{'input' if r['pass'] < 0 else r['pass']}": {
            k: v for k, v in r.items() if k not in ("pass", "images")
        }
        for r in rows
    }
    with atomic_directory(reports_root / "chain") as staging:
        save_passes_figure(staging, aggregates, names, settings, shown=min(show, len(test)))
        save_curves(staging, rows, settings, seed=params.seed, images=len(test), rgb=rgb)
    last = f"pass_{settings.passes}"
    metric_files(metrics_root, "chain.json").write(
        headline_of(
            metrics,
            {CHAIN_SHARP: f"{last}.laplacian_var", CHAIN_MSE: f"{last}.mse_to_input"},
        ),
        # The CPU kernels that computed it (vaelab.kernels) beside the passes.
        metrics | {"kernels": in_force()},
    )
    write_table(metrics_root / "chain.csv", rows, rgb=rgb)
    log.info(
        "chain: Laplacian variance input %.5f, %s %.5f, after %d x %s %.5f",
        rows[0]["laplacian_var"],
        settings.vae,
        rows[1]["laplacian_var"],
        settings.passes,
        settings.ae,
        rows[-1]["laplacian_var"],
    )
    return metrics


def load_chain(
    params: Params, settings: ChainConfig, prepared: Path, models_root: Path
) -> tuple[Autoencoder, Autoencoder, np.ndarray]:
    """The VAE, the AE (each checked against the data) and a copy of the test split."""
    vae, vae_config = load_variant(params, settings.vae, models_root)
    ae, ae_config = load_variant(params, settings.ae, models_root)
    data = load_prepared(prepared)
    check_fits(vae_config, data.images, f"models/{settings.vae}")
    check_fits(ae_config, data.images, f"models/{settings.ae}")
    test = data.split("test")
    del data  # the split is a copy: unmapping images.npy gives back the pages the copy read
    return vae, ae, test


def stream_passes(
    vae: Autoencoder,
    ae: Autoencoder,
    test: np.ndarray,
    names: list[str],
    batch_size: int,
    *,
    show: int,
) -> list[PassAggregate]:
    """One aggregate per name (the inputs, the VAE's output, each AE pass), filled batch by
    batch as the test split streams through the chain."""
    aggregates = [PassAggregate(name, len(test)) for name in names]
    rgb = test.shape[-1] == 3
    for inputs in batches(test, batch_size, model_device(vae)):
        vae_output = vae(inputs)["recon"].float()
        # Each pass's images are measured as soon as they are made; only the last are kept.
        current = inputs
        for step, aggregate in enumerate(aggregates):
            if step == 1:
                current = vae_output
            elif step > 1:
                current = ae(current)["recon"].float()
            aggregate.add(current, inputs, vae_output if rgb else None, show=show)
    return aggregates


def pass_rows(aggregates: list[PassAggregate], *, rgb: bool) -> list[dict[str, Any]]:
    """One row per pass: its number, its name, its blur means, its MSE to the inputs and,
    for colour images, its colour drift."""
    rows = []
    for step, aggregate in enumerate(aggregates):
        row: dict[str, Any] = {
            "pass": step - 1,  # -1: the inputs, 0: the VAE's output, n: after n AE passes
            "images": aggregate.name,
            **{
                key: aggregate.blur_mean(key)
                for key in ("laplacian_var", "laplacian_var_norm", "hf_energy", "blur_effect")
            },
            "mse_to_input": aggregate.mse_to_input(),
        }
        if rgb:
            row |= {
                "colour_shift_from_input": aggregate.colour_shift("input"),
                "colour_shift_from_vae": aggregate.colour_shift("vae"),
            }
        rows.append(row)
    return rows


def save_passes_figure(
    staging: Path,
    aggregates: list[PassAggregate],
    names: list[str],
    settings: ChainConfig,
    *,
    shown: int,
) -> None:
    """``chain.png``: the first test images, one row per pass."""
    figures.save(
        figures.image_rows(
            [to_numpy(aggregate.shown()) for aggregate in aggregates],
            title=f"study 000: {settings.vae}'s reconstructions (from μ) through {settings.ae}, "
            f"pass by pass; the first {shown} test images",
            row_labels=names,
        ),
        staging / "chain.png",
    )


def save_curves(
    staging: Path,
    rows: list[dict[str, Any]],
    settings: ChainConfig,
    *,
    seed: int,
    images: int,
    rgb: bool,
) -> None:
    """``chain_sharpness.png`` (sharpness and MSE per pass) and, for colour images,
    ``chain_colour.png`` (the colour drift per pass)."""
    passes = [r["pass"] for r in rows[1:]]
    figures.save(
        figures.line_panels(
            passes,
            [
                (
                    "Laplacian variance\n(higher is sharper)",
                    {"raw": [r["laplacian_var"] for r in rows[1:]]},
                    {"test images": rows[0]["laplacian_var"]},
                ),
                (
                    "Laplacian variance /\nintensity variance",
                    {"normalised": [r["laplacian_var_norm"] for r in rows[1:]]},
                    {"test images": rows[0]["laplacian_var_norm"]},
                ),
                (
                    "MSE to the inputs\n(lower is closer)",
                    {"MSE": [r["mse_to_input"] for r in rows[1:]]},
                    {},
                ),
            ],
            title=f"study 000: {settings.vae} (seed {seed}) through {settings.ae}, "
            f"{images} test images; pass 0 = the VAE's output",
            xlabel="AE passes",
        ),
        staging / "chain_sharpness.png",
    )
    if rgb:
        figures.save(
            figures.line_chart(
                passes,
                {
                    "from the inputs": [r["colour_shift_from_input"] for r in rows[1:]],
                    "from the VAE output": [r["colour_shift_from_vae"] for r in rows[1:]],
                },
                title="Mean colour shift per pass",
                xlabel="AE passes",
                ylabel="colour shift (norm of mean-colour difference)",
            ),
            staging / "chain_colour.png",
        )


class PassAggregate:
    """What the chain keeps of one pass's images over the ``count`` test images, batch by
    batch: the per-image blur metrics and colour distances (one float per image each, in
    arrays made once), the sum of squared differences to the inputs, and the first ``show``
    images (for the figure)."""

    def __init__(self, name: str, count: int) -> None:
        self.name = name
        self.per_image = PerImage(count)
        self.filled = 0  # images added so far
        # the batches' float32 sums of squared differences, added in float64
        self.squared_error = 0.0
        self.values = 0  # pixels times channels times images summed
        self.first: list[Tensor] = []
        self.kept = 0

    def add(self, images: Tensor, inputs: Tensor, vae_output: Tensor | None, *, show: int) -> None:
        """One batch of this pass: ``images``, the ``inputs`` they came from and, for colour
        images, the VAE's output for the same inputs (None: no colour drift)."""
        rows = slice(self.filled, self.filled + len(images))
        self.filled += len(images)
        self.per_image.put(
            rows, {f"blur.{key}": values for key, values in blur_metrics(images).items()}
        )
        # torch's float32 sum of the batch, the sum the whole split's float32 mean took;
        # batches add in float64.
        self.squared_error += float((images - inputs).square().sum())
        self.values += images.numel()
        if vae_output is not None:
            self.per_image.put(
                rows,
                {
                    "shift.input": colour_distances(inputs, images),
                    "shift.vae": colour_distances(vae_output, images),
                },
            )
        if self.kept < show:
            self.first.append(images[: show - self.kept].clone())  # a copy: a view keeps the batch
            self.kept += len(self.first[-1])

    def blur_mean(self, key: str) -> float:
        """The mean of one blur metric over the images added."""
        return float(self.per_image.arrays()[f"blur.{key}"].mean())

    def mse_to_input(self) -> float:
        """The mean squared difference to the inputs over every value, as torch's float32 mean
        of the whole split computed it (its float32 sum over the float32 count, in float32):
        the same bits when the split is one batch, else within float32 rounding of them."""
        return float(np.float32(np.float32(self.squared_error) / np.float32(self.values)))

    def colour_shift(self, reference: str) -> float:
        """metrics.colour_shift over the whole split, from the ``"input"`` or the ``"vae"``
        output."""
        return float(torch.from_numpy(self.per_image.arrays()[f"shift.{reference}"]).mean().item())

    def shown(self) -> Tensor:
        """The first ``show`` images, for the figure."""
        return torch.cat(self.first)


def write_table(path: Path, rows: list[dict[str, Any]], *, rgb: bool = False) -> None:
    """``metrics/chain.csv``: one row per pass (a DVC plot); only the header when there are
    none."""
    with atomic_file(path) as handle:
        writer = csv.DictWriter(
            handle, fieldnames=CSV_COLUMNS + (COLOUR_COLUMNS if rgb else []), lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(rows)


def write_skipped(reason: str, metrics_root: Path, reports_root: Path) -> dict[str, Any]:
    """The chain's outputs when it does not run: no numbers, and the reason in words beside
    them."""
    with atomic_directory(reports_root / "chain") as staging:
        (staging / "README.md").write_text(f"# Chain not run\n\n{reason}.\n")
    metric_files(metrics_root, "chain.json").write({}, {})
    write_table(metrics_root / "chain.csv", [])
    log.info("chain skipped: %s", reason)
    return {}
