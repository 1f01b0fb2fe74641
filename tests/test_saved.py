"""models/<variant>/: replicates, the config schema and its format version, errors."""

from __future__ import annotations

import json

import pytest
import torch

from vaelab.config import params_from_dict
from vaelab.errors import UserError
from vaelab.models import build_model
from vaelab.models.saved import (
    FORMAT_VERSION,
    SavedConfig,
    Trained,
    load_config,
    load_trained,
    replicates,
    resolve,
    save_replicates,
)


def _trained(seed: int) -> Trained:
    params = params_from_dict(
        {
            "data": {"image_size": 8},
            "models": {"v": {"arch": "vae_conv", "filters": [4], "z_dim": 2}},
        }
    )
    torch.manual_seed(seed)
    model = build_model(params.models["v"], image_size=8, channels=1)
    config = SavedConfig(
        variant="v",
        model=params.models["v"],
        image_size=8,
        channels=1,
        seed=seed,
        train=params.train,
        trainable_params=1,
        data=params.data,
    )
    return Trained(model, config)


def test_replicates_round_trip_and_the_folder_stands_for_its_first_seed(tmp_path):
    save_replicates(tmp_path / "v", [_trained(3), _trained(1)])
    assert [(seed, folder.name) for seed, folder in replicates(tmp_path / "v")] == [
        (1, "seed1"),
        (3, "seed3"),
    ]
    assert (
        resolve(tmp_path / "v") == tmp_path / "v" / "seed1"
        and resolve(tmp_path / "v" / "seed3").name == "seed3"
    )
    model, config = load_trained(tmp_path / "v" / "seed3")
    assert config.seed == 3 and config.format_version == FORMAT_VERSION and not model.training
    torch.testing.assert_close(model.state_dict(), _trained(3).model.state_dict(), rtol=0, atol=0)
    # Saving again replaces the whole variant folder: no replicate of an earlier run lingers.
    save_replicates(tmp_path / "v", [_trained(0)])
    assert [seed for seed, _f in replicates(tmp_path / "v")] == [0]


def test_a_config_from_before_format_versions_reads_as_lanczos(tmp_path):
    raw = _trained(0).config.model_dump(mode="json")
    del raw["format_version"], raw["data"]["resample"]
    (tmp_path / "config.json").write_text(json.dumps(raw))
    config = load_config(tmp_path / "config.json")
    assert config.format_version == 1 and config.data.resample == "lanczos"


@pytest.mark.parametrize(
    "content",
    ["{not json", json.dumps({"variant": "v"}), json.dumps({"format_version": FORMAT_VERSION + 1})],
)
def test_an_unusable_config_is_one_user_error(tmp_path, content):
    (tmp_path / "config.json").write_text(content)
    with pytest.raises(UserError, match=r"not a usable vaelab model config.*retrain"):
        load_config(tmp_path / "config.json")


def test_a_folder_without_a_model_is_a_user_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no trained vaelab model"):
        resolve(tmp_path / "empty")
