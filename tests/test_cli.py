"""The `vaelab` command for people."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from vaelab.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_params_prints_every_default(tmp_path, capsys):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    main(["--params", str(tmp_path / "params.yaml"), "params"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["dataset"] == "lfw"
    assert printed["data"]["crop"]["detect"]["on_miss"] == "center"


def test_bad_params_exit_2_with_one_message(tmp_path, capsys):
    (tmp_path / "params.yaml").write_text("data:\n  image_size: -3\n")
    with pytest.raises(SystemExit) as info:
        main(["--params", str(tmp_path / "params.yaml"), "params"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("vaelab: error:") and "data.image_size" in err and "-3" in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["summary", "ae_pool", "--image-size", "128", "--channels", "3"],
            "Trainable params: 49,731",
        ),
        (["summary", "ae_conv", "--image-size", "128"], "Trainable params: 817,411"),
        (
            ["summary", "accordion", "--set", "folds=2", "--image-size", "128"],
            "Trainable params: 1,634,822",
        ),
        (
            ["summary", "--preset", "study001_vae_v1", "--image-size", "80"],
            "Trainable params: 203,251",
        ),
    ],
)
def test_summary_prints_the_seed_parameter_counts(capsys, argv, expected):
    main(argv)
    assert expected in capsys.readouterr().out


def test_summary_of_an_unknown_arch_is_a_user_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["summary", "nope"])
    assert info.value.code == 2
    assert "ae_pool" in capsys.readouterr().err
