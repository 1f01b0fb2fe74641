"""evaluate's per-image table: every replicate's values, joinable across variants."""

from __future__ import annotations

import numpy as np
import pytest

from vaelab.evaluate.aggregate import Replicate
from vaelab.io.per_image_table import (
    COLUMNS,
    paired_values,
    per_image_table,
    read_tables,
    split_key,
    write_table,
)
from vaelab.stats.paired import paired_difference

IDS = [f"face_{i:03d}" for i in range(5)]


def replicate(seed: int, offset: float = 0.0) -> Replicate:
    base = np.linspace(0.1, 0.5, 5) + offset + 0.001 * seed
    return Replicate(
        seed=seed,
        metrics={},
        per_image={
            "blur.laplacian_var.recon": base,
            "blur.laplacian_var.input": np.linspace(0.2, 0.6, 5),
            "blur.laplacian_var.sample": np.arange(8, dtype=np.float64),
            "recon.mse": base / 10,
            "sharpen.pil_3.laplacian_var": base[:2] * 2,
        },
        notes={},
    )


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("blur.laplacian_var.recon", ("recon", "laplacian_var")),
        ("blur.hf_energy.sample_gmm", ("sample_gmm", "hf_energy")),
        ("recon.ssim", ("recon", "ssim")),
        ("elbo", ("input", "elbo")),
        ("elbo_terms.kl", ("input", "elbo_kl")),
        ("radius.laplacian_var.r0_5", ("radius_r0_5", "laplacian_var")),
        ("sharpen.unsharp.mse", ("sharpened_unsharp", "mse")),
    ],
)
def test_keys_split_into_set_and_measure(key, expected):
    assert split_key(key) == expected


def test_every_value_of_every_replicate_is_a_row():
    table = per_image_table("vae", [replicate(0), replicate(1)], IDS)
    assert tuple(table.columns) == COLUMNS
    assert len(table) == 2 * (5 + 5 + 8 + 5 + 2)
    recon = table[(table["set"] == "recon") & (table["measure"] == "laplacian_var")]
    assert list(recon["image_id"][:5]) == IDS
    assert recon["value"].sum() == pytest.approx(2 * np.linspace(0.1, 0.5, 5).sum() + 0.005)
    samples = table[table["set"] == "sample"]
    assert samples["image_id"].isna().all() and list(samples["item"][:8]) == list(range(8))
    sharpened = table[table["set"] == "sharpened_pil_3"]
    assert list(sharpened["image_id"][:2]) == IDS[:2]


def test_the_table_round_trips_with_the_same_bytes(tmp_path):
    table = per_image_table("vae", [replicate(0), replicate(1)], IDS)
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    write_table(table, first)
    write_table(per_image_table("vae", [replicate(0), replicate(1)], IDS), second)
    assert first.read_bytes() == second.read_bytes()
    back = read_tables([first])
    assert back["value"].tolist() == table["value"].tolist()
    assert back["image_id"].tolist()[:5] == IDS


def test_tables_join_across_variants_into_a_paired_comparison(tmp_path):
    write_table(per_image_table("vae", [replicate(0), replicate(1)], IDS), tmp_path / "vae.parquet")
    write_table(
        per_image_table("vae_z64", [replicate(0, 0.01), replicate(1, 0.01)], IDS),
        tmp_path / "vae_z64.parquet",
    )
    table = read_tables(sorted(tmp_path.glob("*.parquet")))
    a = paired_values(table, "vae_z64", "recon", "laplacian_var", IDS)
    b = paired_values(table, "vae", "recon", "laplacian_var", IDS[::-1][::-1])
    assert a.shape == b.shape == (2, 5)
    assert np.allclose(a - b, 0.01)
    assert paired_difference(a, b, resamples=500).direction == "higher"
    with pytest.raises(KeyError, match="lacks images"):
        paired_values(table, "vae", "recon", "laplacian_var", ["face_999"])


def test_more_values_than_test_images_is_an_error():
    bad = replicate(0)
    bad.per_image["recon.mse"] = np.zeros(9)
    with pytest.raises(ValueError, match="9 values for 5 test images"):
        per_image_table("vae", [bad], IDS)
