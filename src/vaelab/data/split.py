"""Assign every prepared image to train / val / test (or ood, for non-faces)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from vaelab.config.data_config import SplitConfig
from vaelab.errors import UserError

SPLITS = ("train", "val", "test")
OOD = "ood"


def assign_splits(index: pd.DataFrame, cfg: SplitConfig, seed: int) -> np.ndarray:
    """One split name per row of ``index``.

    Rows with ``face == 0`` (lfw's non-faces) go to ``ood``. ``official`` uses the
    ``partition`` column; where the official partition has no validation part (MNIST,
    CIFAR-10) a ``val`` fraction of its training part is drawn with ``seed``. ``random``
    shuffles the rest with ``seed`` and cuts ``test`` and ``val`` fractions off it.
    """
    splits = np.full(len(index), "", dtype=object)
    in_dist = np.ones(len(index), dtype=bool)
    if "face" in index.columns:
        in_dist = index["face"].to_numpy() != 0
        splits[~in_dist] = OOD
    rng = np.random.default_rng(seed)
    rows = np.flatnonzero(in_dist)

    if cfg.method == "official":
        if "partition" not in index.columns:
            raise UserError(
                "data.split.method: official needs a partition, and this data set has none; "
                "use random"
            )
        partition = index["partition"].to_numpy()
        splits[rows] = partition[rows]
        if not (partition[rows] == "val").any():
            train_rows = rows[partition[rows] == "train"]
            n_val = round(cfg.val * len(train_rows))
            splits[rng.permutation(train_rows)[:n_val]] = "val"
        fix = "use data.split.method: random, or a larger data.limit"
    else:
        shuffled = rng.permutation(rows)
        n_test = round(cfg.test * len(rows))
        n_val = round(cfg.val * len(rows))
        splits[shuffled[:n_test]] = "test"
        splits[shuffled[n_test : n_test + n_val]] = "val"
        splits[shuffled[n_test + n_val :]] = "train"
        fix = "raise data.split.val / data.split.test, or data.limit (more images)"

    counts = {name: int((splits == name).sum()) for name in SPLITS}
    for name, count in counts.items():
        if count == 0:
            raise UserError(
                f"split '{name}' is empty ({len(rows)} images: "
                f"{', '.join(f'{k} {v}' for k, v in counts.items())}); {fix}"
            )
    return splits.astype(str)
