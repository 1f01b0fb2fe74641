"""params.yaml validation: every bad key or value is one clear message, exit 2, nothing written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vaelab.config import load_params, params_from_dict
from vaelab.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def test_the_repository_params_are_valid():
    params = load_params(REPO / "params.yaml")
    assert params.data.dataset == "lfw"
    assert params.data.crop.box.top == 40


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"data": {"crop": {"sise": 148}}},
            ["data.crop.sise", "unknown key", "Did you mean 'data.crop.size'?"],
        ),
        ({"data": {"image_size": -3}}, ["data.image_size", "-3", "greater than or equal to 4"]),
        ({"data": {"split": {"val": 1.5}}}, ["data.split.val", "1.5", "less than 1"]),
        (
            {"data": {"dataset": "imagenet"}},
            ["data.dataset", "'imagenet'", "'lfw', 'celeba', 'mnist' or 'cifar10'"],
        ),
        (
            {"data": {"split": {"val": 0.5, "test": 0.6}}},
            ["data.split", "val + test must be below 1"],
        ),
        (
            {"data": {"resample": "nearest"}},
            ["data.resample", "'nearest'", "'bicubic', 'bilinear' or 'lanczos'"],
        ),
        (
            {"data": {"crop": {"method": "center", "size": 148}}},
            ["crop.size 148", "lfw images (25x25)"],
        ),
        ({"data": {"crop": {"method": "landmarks"}}}, ["landmarks", "lfw has none"]),
        ({"data": {"split": {"method": "official"}}}, ["official", "lfw has none"]),
        ({"dta": {}}, ["dta", "Did you mean 'data'?"]),
        (
            {"models": {"vae": {"arch": "vae_conv", "z_dimm": 8}}},
            ["models.vae.z_dimm", "Did you mean 'models.vae.z_dim'?"],
        ),
        (
            {"models": {"v": {"arch": "vae_conv", "z_dim": -1}}},
            ["models.v.z_dim", "-1", "greater than 0"],
        ),
        ({"models": {"v": {"arch": "nope"}}}, ["models.v", "'ae_pool'", "'vae_conv'"]),
        ({"models": {"bad/name": {"arch": "ae_pool"}}}, ["models", "letters, digits"]),
        ({"train": {"epochs": 0}}, ["train.epochs", "greater than 0"]),
        (
            {
                "models": {"vae": {"arch": "vae_conv"}},
                "evaluate": {"chain": {"vae": "vae", "ae": "ae_conv"}},
            },
            [
                "evaluate.chain.ae: 'ae_conv' is not a variant of models: (allowed: vae)",
                "evaluate.chain: null",
            ],
        ),
        (
            {
                "models": {"ae": {"arch": "ae_pool"}},
                "evaluate": {"chain": {"vae": "vea", "ae": "ae"}},
            },
            ["evaluate.chain.vae: 'vea' is not a variant"],
        ),
    ],
)
def test_bad_params_are_one_clear_message(tiny_params_dict, overrides, expected):
    from tests.conftest import deep_merge

    with pytest.raises(UserError) as info:
        params_from_dict(deep_merge(tiny_params_dict, overrides))
    for fragment in expected:
        assert fragment in str(info.value)


def uncommented_params() -> tuple[dict, list[str]]:
    """The repository's params.yaml with every `  # name: {...}` line of its models: section
    uncommented, parsed (not validated), and those variants' names."""
    lines = (REPO / "params.yaml").read_text().splitlines()
    start = lines.index("models:")
    end = next(i for i in range(start + 1, len(lines)) if lines[i] and not lines[i].startswith(" "))
    examples = [i for i in range(start + 1, end) if re.match(r"  # [A-Za-z0-9_]+: \{", lines[i])]
    for i in examples:
        lines[i] = "  " + lines[i].removeprefix("  # ")
    return yaml.safe_load("\n".join(lines)), [lines[i].split(":")[0].strip() for i in examples]


def test_the_commented_model_examples_in_params_validate_as_written():
    # Every `  # name: {...}` line of the models: section, uncommented, is a valid variant.
    raw, names = uncommented_params()
    assert names
    params = params_from_dict(raw)
    assert set(names) <= set(params.models)


def test_a_single_vae_without_a_chain_is_valid(make_params):
    params = make_params({"models": {"vae": {"arch": "vae_conv"}}, "evaluate": {"chain": None}})
    assert list(params.models) == ["vae"] and params.evaluate.chain is None
    # No chain unless params ask for one: the default names no variant that may not exist.
    assert make_params({"models": {"vae": {"arch": "vae_conv"}}}).evaluate.chain is None


def test_the_chain_reference_error_is_exit_2_from_a_stage(tmp_path, tiny_params_dict):
    from tests.conftest import deep_merge

    raw = deep_merge(
        tiny_params_dict,
        {
            "models": {"vae": {"arch": "vae_conv"}},
            "evaluate": {"chain": {"vae": "vae", "ae": "gone"}},
        },
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    done = subprocess.run(
        [sys.executable, str(REPO / "stages" / "chain.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "vaelab: error: params.yaml: evaluate.chain.ae: 'gone' is not a variant of models: "
        "(allowed: vae); name one of them, or set evaluate.chain: null to skip the chain"
    ]
    assert not (tmp_path / "metrics").exists() and not (tmp_path / "reports").exists()


def test_several_problems_are_listed_together(tiny_params_dict):
    from tests.conftest import deep_merge

    with pytest.raises(UserError) as info:
        params_from_dict(deep_merge(tiny_params_dict, {"data": {"image_size": 0, "channels": 2}}))
    message = str(info.value)
    assert "2 problems" in message and "data.image_size" in message and "data.channels" in message


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML") as raised:
        load_params(bad)
    # One line that says where: PyYAML's own message spans five, with a caret drawing.
    assert "\n" not in str(raised.value) and "line 2, column 1" in str(raised.value)


BAD_CASES = {
    "typo": {"data": {"crop": {"sise": 148}}},
    "negative_size": {"data": {"image_size": -3}},
    "val_fraction": {"data": {"split": {"val": 1.5}}},
    "dataset": {"data": {"dataset": "imagenet"}},
}


@pytest.mark.parametrize("stage", ["download", "prepare"])
@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_stage_exits_2_without_traceback_or_outputs(tmp_path, tiny_params_dict, stage, case):
    from tests.conftest import deep_merge

    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump(deep_merge(tiny_params_dict, BAD_CASES[case]))
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(
        [sys.executable, str(REPO / "stages" / f"{stage}.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("vaelab: error: params.yaml: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]
