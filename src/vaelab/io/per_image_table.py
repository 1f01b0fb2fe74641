"""evaluate's per-image results: every per-image and per-sample value of every replicate, kept.

One long table per variant, ``metrics/per_image/<variant>.parquet`` (a DVC output, cached),
with one row per replicate, measure and image (or sample):

========  ===================================================================================
column    what it holds
========  ===================================================================================
variant   the variant's name
seed      the replicate's training seed
set       what was measured: ``input`` (the test images), ``recon``, ``sample`` (prior draws),
          ``sample_gmm`` (the latent GMM's), ``sharpened_<op>`` (reconstructions sharpened),
          ``radius_r<r>`` (decodings of z ~ U[-r, r])
measure   the measure: ``laplacian_var``, ``mse``, ``half_power_freq``, ``elbo``, ...
item      the row within the set: the test image's position in the split, or the sample number
image_id  the test image's ``image_id`` of ``data/prepared/index.csv``, empty for samples
value     the number
========  ===================================================================================

Rows of test-image sets join across variants on ``(set, measure, image_id)``, so a later stage
(or a user with pandas) can pair, subset and re-test without measuring again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from vaelab.io.atomic import atomic_file


class Replicate(Protocol):
    """What a table is made of: a replicate's training seed and its per-image values."""

    @property
    def seed(self) -> int: ...

    @property
    def per_image(self) -> Mapping[str, np.ndarray]: ...


FOLDER = "per_image"  # under metrics/: one <variant>.parquet each
COLUMNS = ("variant", "seed", "set", "measure", "item", "image_id", "value")
# Sets whose items are test images (in split order); the others are samples.
TEST_IMAGE_SETS = ("input", "recon")
TEST_IMAGE_PREFIXES = ("sharpened_",)


def per_image_path(metrics_root: Path, variant: str) -> Path:
    """``metrics/per_image/<variant>.parquet``."""
    return metrics_root / FOLDER / f"{variant}.parquet"


def split_key(key: str) -> tuple[str, str]:
    """A per-image metric's dotted key → ``(set, measure)``.

    >>> split_key("blur.laplacian_var.recon"), split_key("sharpen.pil_3.ssim")
    (('recon', 'laplacian_var'), ('sharpened_pil_3', 'ssim'))
    """
    parts = key.split(".")
    match parts:
        case ["blur", measure, source]:
            return source, measure
        case ["recon", measure]:
            return "recon", measure
        case ["elbo"]:
            return "input", "elbo"
        case ["elbo_terms", term]:
            return "input", f"elbo_{term}"
        case ["radius", measure, radius]:
            return f"radius_{radius}", measure
        case ["sharpen", operation, measure]:
            return f"sharpened_{operation}", measure
        case ["spectrum", measure, source]:
            return source, measure
        case [head, *rest] if rest:
            return head, ".".join(rest)
    return "other", key


def is_test_image_set(name: str) -> bool:
    return name in TEST_IMAGE_SETS or name.startswith(TEST_IMAGE_PREFIXES)


def replicate_rows(variant: str, replicate: Replicate, test_ids: Sequence[str]) -> pd.DataFrame:
    """One replicate's per-image values as rows of the table, in sorted key order."""
    frames = [_empty()]  # a replicate with no per-image values still gives the columns
    for key in sorted(replicate.per_image):
        values = np.asarray(replicate.per_image[key], dtype=np.float64).ravel()
        source, measure = split_key(key)
        items = np.arange(len(values), dtype=np.int32)
        if is_test_image_set(source):
            if len(values) > len(test_ids):
                raise ValueError(f"{key}: {len(values)} values for {len(test_ids)} test images")
            ids = np.asarray(test_ids, dtype=object)[: len(values)]
        else:
            ids = np.full(len(values), None, dtype=object)
        frames.append(
            pd.DataFrame(
                {"set": source, "measure": measure, "item": items, "image_id": ids, "value": values}
            )
        )
    rows = pd.concat(frames, ignore_index=True)
    rows.insert(0, "seed", np.int32(replicate.seed))
    rows.insert(0, "variant", variant)
    return rows


def _empty() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "set": pd.Series(dtype=object),
            "measure": pd.Series(dtype=object),
            "item": pd.Series(dtype=np.int32),
            "image_id": pd.Series(dtype=object),
            "value": pd.Series(dtype=np.float64),
        }
    )


def per_image_table(
    variant: str, replicates: Iterable[Replicate], test_ids: Sequence[str]
) -> pd.DataFrame:
    """Every replicate's rows, with string columns as categoricals (small on disk and in memory)."""
    table = pd.concat([replicate_rows(variant, r, test_ids) for r in replicates], ignore_index=True)
    for column in ("variant", "set", "measure", "image_id"):
        table[column] = table[column].astype("category")
    return table[list(COLUMNS)]


def write_table(table: pd.DataFrame, path: Path) -> None:
    """Write ``table`` as Parquet (zstd) atomically; the same table gives the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, mode="wb") as handle:
        table.to_parquet(handle, engine="pyarrow", index=False, compression="zstd")


def read_tables(paths: Iterable[Path]) -> pd.DataFrame:
    """The tables of several variants as one frame (plain string columns, ready to join)."""
    frames = [pd.read_parquet(path, engine="pyarrow") for path in paths]
    table = pd.concat(frames, ignore_index=True)
    for column in ("variant", "set", "measure", "image_id"):
        table[column] = table[column].astype(object)
    return table


def paired_values(
    table: pd.DataFrame, variant: str, source: str, measure: str, image_ids: Sequence[str]
) -> np.ndarray:
    """``(seeds, images)`` values of one variant's ``source``/``measure`` on ``image_ids``, in
    that order (seeds ascending): the input of :func:`vaelab.stats.paired.paired_difference`."""
    rows = table[
        (table["variant"] == variant) & (table["set"] == source) & (table["measure"] == measure)
    ]
    if rows.empty:
        raise KeyError(f"{variant}: no per-image values of {source}/{measure}")
    wide = rows.pivot(index="seed", columns="image_id", values="value").sort_index()
    missing = sorted(set(image_ids) - set(wide.columns))
    if missing:
        raise KeyError(f"{variant}: {source}/{measure} lacks images {missing[:3]}")
    return np.asarray(wide.loc[:, list(image_ids)].to_numpy(), dtype=np.float64)
