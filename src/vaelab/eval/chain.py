"""The ``chain`` stage (seed 000): feed a VAE's reconstructions through an AE ``passes``
times and record, per pass, the blur metrics and how far the colours drifted.

Writes ``metrics/detail/chain.json`` (one entry per pass), ``metrics/chain.json`` (its
headline: the VAE's and the last pass's sharpness, the last pass's MSE to the inputs),
``metrics/chain.csv`` (every pass, as a DVC plot) and ``reports/chain/``: the images pass by pass, sharpness and MSE to the inputs
per pass, and (colour images only) the colour drift. The first replicate (params.seed) of
each of the two variants is chained.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import torch

from vaelab.config import Params
from vaelab.data.prepared import check_fits, load_prepared
from vaelab.eval import figures
from vaelab.eval.inference import model_device, reconstruct, to_numpy, to_tensor
from vaelab.eval.metrics import blur_metrics, colour_shift
from vaelab.eval.variant import load_variant
from vaelab.io.atomic import atomic_directory, atomic_file
from vaelab.io.metric_files import headline_of, metric_files

log = logging.getLogger("vaelab.chain")

SKIPPED_REASON = "evaluate.chain is null in params.yaml: no VAE/AE pair to chain"
CSV_COLUMNS = ["pass", "images", "laplacian_var", "laplacian_var_norm", "hf_energy", "blur_effect", "mse_to_input"]
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
    settings = params.evaluate.chain
    if settings is None:
        return write_skipped(SKIPPED_REASON, metrics_root, reports_root)
    vae, vae_config = load_variant(params, settings.vae, models_root)
    ae, ae_config = load_variant(params, settings.ae, models_root)
    data = load_prepared(prepared)
    check_fits(vae_config, data.images, f"models/{settings.vae}")
    check_fits(ae_config, data.images, f"models/{settings.ae}")
    test = data.split("test")
    batch = params.evaluate.batch_size
    inputs = to_tensor(test, model_device(ae))
    current = reconstruct(vae, test, batch).float()
    stages = [("input", inputs), (settings.vae, current)]
    for step in range(1, settings.passes + 1):
        current = torch.cat([ae(current[i : i + batch])["recon"].float() for i in range(0, len(current), batch)])
        stages.append((f"{settings.ae} x{step}", current))

    rgb = inputs.shape[1] == 3
    rows = []
    for step, (name, images) in enumerate(stages):
        blur = blur_metrics(images)
        row = {
            "pass": step - 1,  # -1: the inputs, 0: the VAE's output, n: after n AE passes
            "images": name,
            **{key: float(blur[key].mean()) for key in ("laplacian_var", "laplacian_var_norm", "hf_energy",
                                                        "blur_effect")},
            "mse_to_input": float((images - inputs).square().mean()),
        }
        if rgb:
            row |= {"colour_shift_from_input": colour_shift(inputs, images),
                    "colour_shift_from_vae": colour_shift(stages[1][1], images)}
        rows.append(row)
    metrics = {f"pass_{'input' if r['pass'] < 0 else r['pass']}": {k: v for k, v in r.items() if k not in ("pass", "images")}
               for r in rows}

    show = params.evaluate.show
    with atomic_directory(reports_root / "chain") as staging:
        figures.save(
            figures.image_rows(
                [to_numpy(images[:show]) for _name, images in stages],
                title=f"seed 000: {settings.vae}'s reconstructions (from μ) through {settings.ae}, pass by pass; "
                      f"the first {min(show, len(test))} test images",
                row_labels=[name for name, _images in stages],
            ),
            staging / "chain.png",
        )
        passes = [r["pass"] for r in rows[1:]]
        figures.save(
            figures.line_panels(
                passes,
                [
                    ("Laplacian variance\n(higher is sharper)", {"raw": [r["laplacian_var"] for r in rows[1:]]},
                     {"test images": rows[0]["laplacian_var"]}),
                    ("Laplacian variance /\nintensity variance", {"normalised": [r["laplacian_var_norm"] for r in rows[1:]]},
                     {"test images": rows[0]["laplacian_var_norm"]}),
                    ("MSE to the inputs\n(lower is closer)", {"MSE": [r["mse_to_input"] for r in rows[1:]]}, {}),
                ],
                title=f"seed 000: {settings.vae} (seed {params.seed}) through {settings.ae}, {len(test)} test images; "
                      "pass 0 = the VAE's output",
                xlabel="AE passes",
            ),
            staging / "chain_sharpness.png",
        )
        if rgb:
            figures.save(
                figures.line_chart(
                    passes,
                    {"from the inputs": [r["colour_shift_from_input"] for r in rows[1:]],
                     "from the VAE output": [r["colour_shift_from_vae"] for r in rows[1:]]},
                    title="Mean colour shift per pass",
                    xlabel="AE passes",
                    ylabel="colour shift (norm of mean-colour difference)",
                ),
                staging / "chain_colour.png",
            )
    last = f"pass_{settings.passes}"
    metric_files(metrics_root, "chain.json").write(
        headline_of(metrics, {"sharpness.vae": "pass_0.laplacian_var", "sharpness.last": f"{last}.laplacian_var",
                              "mse_to_input.last": f"{last}.mse_to_input"}),
        metrics,
    )
    write_table(metrics_root / "chain.csv", rows, rgb=rgb)
    log.info("chain: Laplacian variance input %.5f, %s %.5f, after %d x %s %.5f", rows[0]["laplacian_var"],
             settings.vae, rows[1]["laplacian_var"], settings.passes, settings.ae, rows[-1]["laplacian_var"])
    return metrics


def write_table(path: Path, rows: list[dict[str, Any]], *, rgb: bool = False) -> None:
    """``metrics/chain.csv``: one row per pass (a DVC plot); only the header when there are none."""
    with atomic_file(path) as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS + (COLOUR_COLUMNS if rgb else []), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def write_skipped(reason: str, metrics_root: Path, reports_root: Path) -> dict[str, Any]:
    """The chain's outputs when it does not run: no numbers, and the reason in words beside them."""
    with atomic_directory(reports_root / "chain") as staging:
        (staging / "README.md").write_text(f"# Chain not run\n\n{reason}.\n")
    metric_files(metrics_root, "chain.json").write({}, {})
    write_table(metrics_root / "chain.csv", [])
    log.info("chain skipped: %s", reason)
    return {}

