"""The ``compare`` stage: one table of every variant, the seeds' claims checked against
it, and side-by-side figures.

Writes ``metrics/compare.json``, ``metrics/compare/history.csv`` (every variant's
training curves in one long table, for one DVC plot), ``reports/compare.md`` and
``reports/compare/*.png``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from vaelab.config import Params
from vaelab.data.prepared import check_fits, load_prepared
from vaelab.errors import UserError
from vaelab.eval import figures
from vaelab.eval.inference import reconstruct, to_numpy
from vaelab.eval.variant import load_variant
from vaelab.io.atomic import atomic_directory, atomic_file, write_json
from vaelab.models import Autoencoder

log = logging.getLogger("vaelab.compare")

# Training-curve columns every variant has (VAEs add their KL terms).
HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "train_recon", "val_recon"]


TABLE_COLUMNS = [
    "variant", "kind", "latent", "recon.mse", "recon.psnr", "recon.ssim", "laplacian_var.recon",
    "laplacian_var.sample", "sharpness_vs_input", "hf_energy.recon", "blur_effect.recon", "params", "train_seconds",
]


@dataclass(frozen=True)
class Claim:
    key: str
    text: str
    holds: bool
    detail: str


def read_json(path: Path, how_to_fix: str) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"{path}: missing; {how_to_fix}")
    return json.loads(path.read_text())


def variant_row(variant: str, model: Autoencoder, evaluation: dict, training: dict) -> dict[str, Any]:
    blur = evaluation["blur"]
    return {
        "variant": variant,
        "kind": "VAE" if model.is_variational else "AE",
        "latent": model.latent_dim,
        "recon.mse": evaluation["recon"]["mse"],
        "recon.psnr": evaluation["recon"]["psnr"],
        "recon.ssim": evaluation["recon"]["ssim"],
        "laplacian_var.recon": blur["laplacian_var"]["recon"],
        "laplacian_var.sample": blur["laplacian_var"]["sample"],
        "hf_energy.recon": blur["hf_energy"]["recon"],
        "blur_effect.recon": blur["blur_effect"]["recon"],
        "sharpness_vs_input": blur["laplacian_var"]["recon"] / max(blur["laplacian_var"]["input"], 1e-12),
        "params": training.get("trainable_params"),
        "train_seconds": training.get("seconds"),
    }


def check_claims(rows: pd.DataFrame, evaluations: dict[str, dict], reference: dict[str, float]) -> list[Claim]:
    """The seeds' main claims, each measured on this run's numbers."""
    claims = []
    lap_in = reference["laplacian_var"]
    blurrier = [(v, r) for v, r in rows.iterrows() if r["laplacian_var.recon"] < lap_in and r["laplacian_var.sample"] < lap_in]
    not_blurrier = [v for v in rows.index if v not in dict(blurrier)]
    claims.append(Claim(
        "recon_and_samples_blurrier_than_inputs",
        "Reconstructions and samples are blurrier than the inputs (lower Laplacian variance)",
        not not_blurrier,
        f"{len(blurrier)} of {len(rows)} variants; input Laplacian variance {lap_in:.5f}"
        + (f"; not for {', '.join(not_blurrier)}" if not_blurrier else ""),
    ))

    vaes, aes = rows[rows["kind"] == "VAE"], rows[rows["kind"] == "AE"]
    if len(vaes) and len(aes):
        sharpest_vae, bluriest_ae = vaes["laplacian_var.recon"].idxmax(), aes["laplacian_var.recon"].idxmin()
        holds = vaes["laplacian_var.recon"].max() < aes["laplacian_var.recon"].min()
        claims.append(Claim(
            "vaes_blurrier_than_aes",
            "VAE reconstructions are blurrier than plain AE reconstructions",
            bool(holds),
            f"sharpest VAE {sharpest_vae} {vaes['laplacian_var.recon'].max():.5f} vs blurriest AE {bluriest_ae} "
            f"{aes['laplacian_var.recon'].min():.5f}; mean VAE {vaes['laplacian_var.recon'].mean():.5f}, "
            f"mean AE {aes['laplacian_var.recon'].mean():.5f}",
        ))
    else:
        claims.append(Claim("vaes_blurrier_than_aes", "VAE reconstructions are blurrier than plain AE reconstructions",
                            False, "not measurable: needs at least one VAE and one plain AE variant"))

    if vaes["latent"].nunique() >= 2:
        ordered = vaes.sort_values("latent")
        values = ordered["laplacian_var.recon"].to_numpy()
        holds = bool(np.all(np.diff(values) > 0))
        pairs = ", ".join(f"{v} (z {int(r['latent'])}) {r['laplacian_var.recon']:.5f}" for v, r in ordered.iterrows())
        claims.append(Claim("smaller_latent_blurrier", "A VAE with a smaller latent is blurrier than one with a larger",
                            holds, f"Laplacian variance of reconstructions by latent size: {pairs}"))
    else:
        claims.append(Claim("smaller_latent_blurrier", "A VAE with a smaller latent is blurrier than one with a larger",
                            False, "not measurable: needs VAE variants with different latent sizes"))

    raised, details = [], []
    for variant, evaluation in evaluations.items():
        sharpen = evaluation["sharpen"]
        base = sharpen["none"]["laplacian_var"]
        strongest = max((k for k in sharpen if k.startswith("pil_")), key=lambda k: float(k[4:].replace("_", ".")))
        after = sharpen[strongest]["laplacian_var"]
        raised.append(after > base)
        details.append(f"{variant} {base:.5f} → {after:.5f} ({strongest})")
    claims.append(Claim("sharpening_raises_laplacian_var", "Sharpening (PIL Sharpness) raises the Laplacian variance",
                        all(raised), "; ".join(details)))
    return claims


def run_compare(
    params: Params,
    *,
    prepared: Path = Path("data/prepared"),
    models_root: Path = Path("models"),
    metrics_root: Path = Path("metrics"),
    reports_root: Path = Path("reports"),
) -> dict[str, Any]:
    data = load_prepared(prepared)
    test = data.split("test")
    shown = test[: params.evaluate.show]
    evaluations, records, recon_rows, sample_rows, histories = {}, [], [], [], []
    for variant in params.models:
        evaluation = read_json(metrics_root / "eval" / f"{variant}.json", f"run `dvc repro evaluate@{variant}` first")
        training = read_json(metrics_root / "train" / f"{variant}.json", f"run `dvc repro train@{variant}` first")
        model, config = load_variant(params, variant, models_root)
        check_fits(config, data.images, f"models/{variant}")
        evaluations[variant] = evaluation
        records.append(variant_row(variant, model, evaluation, training))
        recon_rows.append(to_numpy(reconstruct(model, shown, params.evaluate.batch_size)))
        if model.is_variational:
            generator = torch.Generator().manual_seed(params.seed)
            sample_rows.append((variant, to_numpy(model.sample(params.evaluate.show, generator=generator))))
        history_path = metrics_root / "history" / f"{variant}.csv"
        if history_path.is_file():
            history = pd.read_csv(history_path)
            histories.append(history[[c for c in HISTORY_COLUMNS if c in history]].assign(variant=variant))

    first = next(iter(evaluations.values()))
    reference = {name: first["blur"][name]["input"] for name in ("laplacian_var", "hf_energy", "blur_effect")}
    rows = pd.DataFrame(records).set_index("variant")
    claims = check_claims(rows, evaluations, reference)

    result = {
        "reference": reference,
        "variants": {v: {k: (None if pd.isna(x) else x) for k, x in r.items() if k != "kind"}
                     for v, r in rows.to_dict(orient="index").items()},
        "claims": {c.key: int(c.holds) for c in claims},
    }
    with atomic_directory(reports_root / "compare") as staging:
        figures.save(
            figures.image_rows([shown / 255.0, *recon_rows], title="The same test images reconstructed by every variant",
                               row_labels=["input", *params.models]),
            staging / "reconstructions.png",
        )
        if sample_rows:
            figures.save(
                figures.image_rows([images for _v, images in sample_rows], title="Samples z ~ N(0, I) of every VAE",
                                   row_labels=[v for v, _images in sample_rows]),
                staging / "samples.png",
            )
        figures.save(
            figures.scatter_chart(
                {v: (r["recon.mse"], r["laplacian_var.recon"]) for v, r in rows.iterrows()},
                title="Sharpness against reconstruction error",
                xlabel="reconstruction MSE (test split, lower is better)",
                ylabel="Laplacian variance of reconstructions\n(higher is sharper)",
                reference=("test images", reference["laplacian_var"]),
            ),
            staging / "sharpness_vs_error.png",
        )
    write_json(metrics_root / "compare.json", result)
    if histories:
        with atomic_file(metrics_root / "compare" / "history.csv") as handle:
            pd.concat(histories, ignore_index=True).to_csv(handle, index=False, lineterminator="\n")
    with atomic_file(reports_root / "compare.md") as handle:
        handle.write(render_markdown(rows, reference, claims, evaluations, sample_rows != []))
    for claim in claims:
        log.info("%s: %s (%s)", "holds" if claim.holds else "does NOT hold", claim.text, claim.detail)
    return result


def render_markdown(rows: pd.DataFrame, reference: dict[str, float], claims: list[Claim],
                    evaluations: dict[str, dict], has_samples: bool) -> str:
    table = rows.reset_index()
    reference_row = {"variant": "real images (test inputs)", "kind": "-", "laplacian_var.recon": reference["laplacian_var"],
                     "hf_energy.recon": reference["hf_energy"], "blur_effect.recon": reference["blur_effect"],
                     "sharpness_vs_input": 1.0}
    table = pd.concat([pd.DataFrame([reference_row]), table], ignore_index=True)
    table["params"] = table["params"].map(lambda n: "" if pd.isna(n) else f"{int(n):,}")
    table["latent"] = table["latent"].map(lambda n: "" if pd.isna(n) else f"{int(n)}")
    table = table[[c for c in TABLE_COLUMNS if c in table]]
    table = table.astype(object).where(table.notna(), None)  # blank cells, not "nan", in the reference row
    lines = [
        "# Variant comparison",
        "",
        "Test split. Reconstruction: MSE, PSNR (dB), SSIM on images in [0, 1]. Blur: Laplacian variance "
        "(higher is sharper), FFT high-frequency energy fraction (higher is sharper), scikit-image blur_effect "
        "(higher is blurrier). The first row is the real test images. `sharpness_vs_input` = Laplacian variance "
        "of the reconstructions / that of the inputs. hf_energy and blur_effect are scale-free: on nearly flat "
        "outputs (a collapsed VAE) they measure faint artefacts, so read them beside the Laplacian variance.",
        "",
        table.to_markdown(index=False, floatfmt=".4g", missingval=""),
        "",
        "## The seeds' claims, measured",
        "",
    ]
    for claim in claims:
        lines.append(f"- **{'holds' if claim.holds else 'does not hold'}**: {claim.text}. {claim.detail}.")
    notes = {v: e.get("notes", {}) for v, e in evaluations.items()}
    collapse = [f"- {v}: {n['collapse']}" for v, n in notes.items() if "collapse" in n]
    if collapse:
        lines += ["", "## Posterior collapse", "", *collapse]
    ood = [(v, e["ood"]) for v, e in evaluations.items() if "ood" in e]
    if ood:
        lines += ["", "## Anomaly detection (seed 004): AUROC, test faces against non-faces", "",
                  "| variant | reconstruction error | negative ELBO |", "|---|---|---|"]
        lines += [f"| {v} | {o['auroc_recon_error']:.3f} | "
                  f"{o['auroc_neg_elbo']:.3f} |" if "auroc_neg_elbo" in o else f"| {v} | {o['auroc_recon_error']:.3f} | |"
                  for v, o in ood]
    lines += ["", "## Figures", "", "![reconstructions](compare/reconstructions.png)", ""]
    if has_samples:
        lines += ["![samples](compare/samples.png)", ""]
    lines += ["![sharpness against error](compare/sharpness_vs_error.png)", ""]
    return "\n".join(lines)
