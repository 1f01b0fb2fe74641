"""The ``evaluate@<variant>`` stage: reconstruction, blur and latent metrics on the test
split, and the seeds' experiments as figures, for one trained variant.

Writes ``metrics/eval/<variant>.json`` (keys in DESIGN.md) and ``reports/<variant>/*.png``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from vaelab.config import Params
from vaelab.config.evaluate import EvaluateConfig
from vaelab.data.prepared import PreparedData, check_fits, load_prepared
from vaelab.errors import UserError
from vaelab.eval import figures
from vaelab.eval.arithmetic import run_arithmetic, skip_reason
from vaelab.eval.inference import batches, decode_all, encode_all, prior_draws, reconstruct, to_numpy
from vaelab.eval.interpolate import interpolate
from vaelab.eval.latent import PixelSpread, active_dims, collapse_verdict, elbo_terms
from vaelab.eval.metrics import auroc, blur_metrics, reconstruction_metrics
from vaelab.eval.sharpen import pil_sharpness, unsharp
from vaelab.eval.variant import load_variant
from vaelab.io.atomic import atomic_directory, write_json
from vaelab.models import Autoencoder

log = logging.getLogger("vaelab.evaluate")

# PSNR of a perfect reconstruction is infinite; JSON has no infinity, so cap it.
PSNR_CAP_DB = 100.0


def label(value: float) -> str:
    """A number as a metric-key segment without dots: 0.5 → '0_5', 3.0 → '3'."""
    return f"{value:g}".replace(".", "_").replace("-", "m")


def run_evaluate(
    params: Params,
    variant: str,
    *,
    prepared: Path = Path("data/prepared"),
    models_root: Path = Path("models"),
    metrics_root: Path = Path("metrics"),
    reports_root: Path = Path("reports"),
    progress: bool = True,
) -> dict[str, Any]:
    model, config = load_variant(params, variant, models_root)
    data = load_prepared(prepared)
    check_fits(config, data.images, f"models/{variant}")
    test = data.split("test")
    if len(test) < 2:
        raise UserError(f"{prepared}: the test split has {len(test)} image(s); evaluation needs at least 2 (data.split.test)")
    settings = params.evaluate
    torch.manual_seed(params.seed)

    metrics, per_image = measure_test_split(model, test, settings, params.seed, progress)
    notes: dict[str, str] = {}
    samples = model.sample(settings.samples, generator=torch.Generator().manual_seed(params.seed)).float()
    sample_blur = blur_metrics(samples)
    for name, values in sample_blur.items():
        metrics["blur"][name]["sample"] = float(values.mean())
    sample_spread = PixelSpread()
    sample_spread.add(samples)

    if model.is_variational:
        ratio_recon = metrics["spread"]["recon"] / max(metrics["spread"]["input"], 1e-12)
        ratio_sample = sample_spread.spread() / max(metrics["spread"]["input"], 1e-12)
        collapsed, verdict = collapse_verdict(ratio_recon, ratio_sample, settings.collapse_ratio)
        metrics["collapse"] = {"recon_ratio": ratio_recon, "sample_ratio": ratio_sample, "collapsed": int(collapsed)}
        notes["collapse"] = verdict
    metrics["spread"]["sample"] = sample_spread.spread()

    ood = measure_ood(model, data, per_image, settings, params.seed)
    if isinstance(ood, str):
        notes["ood"] = ood
    else:
        metrics["ood"] = ood

    with atomic_directory(reports_root / variant) as staging:
        radius_rows = draw_figures(model, variant, data, test, samples, per_image, settings, params.seed, staging, notes)
        metrics["radius"] = {"laplacian_var": radius_rows}
    metrics["notes"] = notes
    metrics["images"] = {"test": len(test), "samples": settings.samples}
    write_json(metrics_root / "eval" / f"{variant}.json", metrics)
    log.info("%s: recon mse %.5f, ssim %.3f, Laplacian variance input %.5f / recon %.5f / sample %.5f",
             variant, metrics["recon"]["mse"], metrics["recon"]["ssim"], metrics["blur"]["laplacian_var"]["input"],
             metrics["blur"]["laplacian_var"]["recon"], metrics["blur"]["laplacian_var"]["sample"])
    return metrics


@torch.no_grad()
def measure_test_split(
    model: Autoencoder, test: np.ndarray, settings: EvaluateConfig, seed: int, progress: bool
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One pass over the test split in batches; returns the metric tree and per-image arrays."""
    per_image: dict[str, list[np.ndarray]] = {}
    spreads = {"input": PixelSpread(), "recon": PixelSpread()}
    sharpened: dict[str, dict[str, list[np.ndarray]]] = {}
    codes: list[Tensor] = []
    kl_dims: list[Tensor] = []
    generator = torch.Generator().manual_seed(seed)
    sharpen_left = settings.sharpen.images
    total = math.ceil(len(test) / settings.batch_size)
    for x in tqdm(batches(test, settings.batch_size, next(model.parameters()).device), total=total,
                  desc="evaluate", unit="batch", disable=not progress):
        outputs = model(x)
        recon = outputs["recon"].float()
        for name, values in reconstruction_metrics(x, recon).items():
            per_image.setdefault(f"recon.{name}", []).append(values)
        for source, images in (("input", x), ("recon", recon)):
            for name, values in blur_metrics(images).items():
                per_image.setdefault(f"blur.{name}.{source}", []).append(values)
            spreads[source].add(images)
        codes.append(outputs["z"].flatten(1).float().cpu())
        if model.is_variational:
            terms = elbo_terms(model, x, generator, codes=outputs)
            for name in ("elbo", "recon", "kl"):
                per_image.setdefault(f"elbo.{name}", []).append(terms[name].cpu().double().numpy())
            kl_dims.append(terms["kl_per_dim"].cpu())
        if sharpen_left > 0:
            part = recon[:sharpen_left]
            sharpen_left -= len(part)
            for key, images in sharpen_variants(part, settings).items():
                for name, values in blur_metrics(images).items():
                    sharpened.setdefault(key, {}).setdefault(name, []).append(values)

    arrays = {key: np.concatenate(values) for key, values in per_image.items()}
    arrays["recon.psnr"] = np.minimum(arrays["recon.psnr"], PSNR_CAP_DB)
    mean = {key: float(values.mean()) for key, values in arrays.items()}
    metrics: dict[str, Any] = {
        "recon": {name: mean[f"recon.{name}"] for name in ("mse", "psnr", "ssim")},
        "blur": {
            name: {source: mean[f"blur.{name}.{source}"] for source in ("input", "recon")}
            for name in ("laplacian_var", "hf_energy", "blur_effect")
        },
        "spread": {source: spread.spread() for source, spread in spreads.items()},
        "sharpen": {},
    }
    for key, by_metric in sharpened.items():
        metrics["sharpen"][key] = {name: float(np.concatenate(values).mean()) for name, values in by_metric.items()}
    all_codes = torch.cat(codes)
    arrays["codes"] = all_codes.numpy()
    if model.is_variational:
        kl = torch.cat(kl_dims).double().mean(dim=0)
        metrics["elbo"] = mean["elbo.elbo"]
        metrics["elbo_terms"] = {"recon": mean["elbo.recon"], "kl": mean["elbo.kl"]}
        active = active_dims(all_codes, settings.active_threshold)
        metrics["latent"] = {
            "dims": int(kl.numel()),
            "kl_per_dim": float(kl.mean()),
            "kl_per_dim_max": float(kl.max()),
            "active_units": int(active.sum()),
        }
        arrays["kl_per_dim"] = kl.numpy()
        arrays["active"] = active.numpy()
    return metrics, arrays


def sharpen_variants(images: Tensor, settings: EvaluateConfig) -> dict[str, Tensor]:
    """The images unchanged, through PIL's Sharpness at each factor, and through an unsharp mask."""
    out = {"none": images}
    for factor in settings.sharpen.factors:
        out[f"pil_{label(factor)}"] = pil_sharpness(images, factor)
    out["unsharp"] = unsharp(images, settings.sharpen.unsharp_radius, settings.sharpen.unsharp_amount)
    return out


@torch.no_grad()
def measure_ood(
    model: Autoencoder, data: PreparedData, per_image: dict[str, np.ndarray], settings: EvaluateConfig, seed: int
) -> dict[str, float] | str:
    """AUROC of anomaly scores, test faces against the out-of-distribution split (seed 004)."""
    if not data.has_split("ood"):
        return "no out-of-distribution split in this data set (lfw's non-faces are one); AUROC not measured"
    outliers = data.split("ood")
    errors = []
    elbos = []
    generator = torch.Generator().manual_seed(seed + 1)
    for x in batches(outliers, settings.batch_size, next(model.parameters()).device):
        outputs = model(x)
        errors.append((outputs["recon"].float() - x).square().flatten(1).mean(dim=1).cpu().double().numpy())
        if model.is_variational:
            elbos.append(elbo_terms(model, x, generator, codes=outputs)["elbo"].cpu().double().numpy())
    result = {
        "auroc_recon_error": auroc(per_image["recon.mse"], np.concatenate(errors)),
        "inliers": int(len(per_image["recon.mse"])),
        "outliers": int(len(outliers)),
    }
    if model.is_variational:
        result["auroc_neg_elbo"] = auroc(-per_image["elbo.elbo"], -np.concatenate(elbos))
    return result


@torch.no_grad()
def draw_figures(
    model: Autoencoder,
    variant: str,
    data: PreparedData,
    test: np.ndarray,
    samples: Tensor,
    per_image: dict[str, np.ndarray],
    settings: EvaluateConfig,
    seed: int,
    out: Path,
    notes: dict[str, str],
) -> dict[str, float]:
    """Write every figure of ``reports/<variant>/`` into ``out``; returns the Laplacian variance per radius row."""
    batch = settings.batch_size
    shown = test[: settings.show]
    recon = reconstruct(model, shown, batch)
    figures.save(
        figures.image_rows([shown / 255.0, to_numpy(recon)], title=f"{variant}: test images (top) and reconstructions",
                           row_labels=["input", "reconstruction"]),
        out / "reconstructions.png",
    )
    figures.save(
        figures.image_rows(tile_rows(to_numpy(samples[:64]), 8), title=f"{variant}: decoded z ~ N(0, I)"),
        out / "samples.png",
    )

    rows, labels, radius_blur = [], [], {}
    for i, radius in enumerate(settings.radii):
        z = prior_draws(model.latent_shape, settings.radius_samples, seed + 100 + i, low=radius)
        images = decode_all(model, z, batch)
        lap = float(blur_metrics(images)["laplacian_var"].mean())
        radius_blur[f"r{label(radius)}"] = lap
        rows.append(to_numpy(images))
        labels.append(f"r = {radius:g}\nLap var {lap:.4f}")
    figures.save(
        figures.image_rows(rows, title=f"{variant}: z uniform in [-r, r] per coordinate (seed 003)", row_labels=labels),
        out / "radius.png",
    )

    interpolation = settings.interpolation
    pairs = min(interpolation.pairs, len(test) // 2)
    ends = encode_all(model, test[: 2 * pairs], batch)["z"]
    walks = [decode_all(model, interpolate(ends[2 * p], ends[2 * p + 1], interpolation.steps, interpolation.method),
                        batch) for p in range(pairs)]
    figures.save(
        figures.image_rows([to_numpy(w) for w in walks],
                           title=f"{variant}: {interpolation.method} interpolation between test images",
                           col_labels=[f"t={t:.2f}" for t in np.linspace(0, 1, interpolation.steps)]),
        out / "interpolation.png",
    )

    reason = skip_reason(data.index, settings.arithmetic)
    if reason is not None:
        notes["arithmetic"] = reason
    else:
        results = run_arithmetic(model, data.images, data.index, settings.arithmetic, batch)
        arithmetic_rows, arithmetic_labels = [], []
        for result in results:
            row = [*result.term_images, result.result] + ([result.expected] if result.expected is not None else [])
            arithmetic_rows.append(to_numpy(torch.stack(row)))
            arithmetic_labels.append(result.name)
        names = [f"{'+' if s > 0 else '−'} {g}" for s, g in results[0].terms] + ["= result", "expected"]
        figures.save(
            figures.image_rows(arithmetic_rows, title=f"{variant}: latent arithmetic (seed 001)",
                               row_labels=arithmetic_labels, col_labels=names),
            out / "arithmetic.png",
        )
        notes["arithmetic"] = "; ".join(
            f"{r.name} = {r.expression}" + (f": MSE to the decoded '{r.name}' group {r.mse_to_expected:.5f}"
                                            if r.mse_to_expected is not None else "") for r in results)

    codes = per_image["codes"]
    dims = list(range(min(settings.histogram_dims, codes.shape[1])))
    what = "encoder means" if model.is_variational else "latent values"
    figures.save(figures.latent_histograms(codes, dims, title=f"{variant}: {what} of the test split vs N(0, 1)"),
                 out / "latent_histograms.png")
    if model.is_variational:
        figures.save(
            figures.kl_per_dim_chart(per_image["kl_per_dim"], per_image["active"],
                                     title=f"{variant}: KL per latent dimension on the test split"),
            out / "kl_per_dim.png",
        )

    versions = sharpen_variants(recon, settings)
    figures.save(
        figures.image_rows(
            [to_numpy(images) for images in versions.values()],
            title=f"{variant}: reconstructions sharpened (seed 003)",
            row_labels=[f"{key}\nLap var {float(blur_metrics(images)['laplacian_var'].mean()):.4f}"
                        for key, images in versions.items()],
        ),
        out / "sharpening.png",
    )
    return radius_blur


def tile_rows(images: np.ndarray, per_row: int) -> list[np.ndarray]:
    return [images[i : i + per_row] for i in range(0, len(images), per_row)]
