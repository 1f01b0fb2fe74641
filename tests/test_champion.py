"""Who moves champion: a plain repro of committed params does; a DVC experiment sets
exp-<name> instead, uncommitted params hold it, and `vaelab promote` moves it by hand."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from tests.support.trained import (
    TINY_DATA,
    TINY_MODELS,
    save_variant,
    tiny_params,
    workspace_fixture,
    write_eval,
)
from vaelab.cli import main
from vaelab.registry.champion import experiment_alias
from vaelab.registry.register import run_register

workspace = pytest.fixture(workspace_fixture)


def register(ws):
    return run_register(tiny_params(), models_root=ws.models, metrics_root=ws.metrics)


def train(ws, seed, mse):
    """Stand-in for train + evaluate: new weights (from ``seed``) with ``recon.mse`` = ``mse``."""
    save_variant(ws.models, "vae", seed=seed)
    write_eval(ws.metrics, "vae", mse)


@pytest.mark.parametrize(
    ("name", "alias"),
    [
        ("puffy-daks", "exp-puffy-daks"),
        ("kl 1.0/x", "exp-kl-1-0-x"),
        ("v1", "exp-v1"),
        ("é", "exp-unnamed"),
    ],
)
def test_experiment_aliases_follow_mlflows_alias_rules(name, alias):
    assert experiment_alias(name) == alias
    assert len(experiment_alias("x" * 300)) == 255


def test_an_experiment_sets_its_alias_and_champion_moves_only_in_a_later_plain_repro(
    workspace, monkeypatch
):
    train(workspace, 0, 0.05)
    assert register(workspace)["variants"]["vae"]["champion"]["version"] == 1

    monkeypatch.setenv("DVC_EXP_NAME", "kl 1.0/x")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "b" * 40)
    train(workspace, 1, 0.01)  # better: in a plain repro it would take over
    report = register(workspace)
    vae = report["variants"]["vae"]
    assert report["champion_rule"] == {
        "kind": "experiment",
        "experiment": "kl 1.0/x",
        "alias": "exp-kl-1-0-x",
    }
    assert vae["version"] == 2 and vae["registered"] is True
    assert vae["aliases"] == {"champion": 1, "exp-kl-1-0-x": 2, "latest": 2}
    assert vae["champion"]["moved"] is False and vae["champion"]["rule"] == "experiment"
    assert "never moves champion" in vae["champion"]["reason"]
    assert "vaelab promote vae --alias exp-kl-1-0-x" in vae["champion"]["reason"]
    assert vae["uri"] == "models:/vaelab-vae@exp-kl-1-0-x"
    assert report == json.loads((workspace.metrics / "registry.json").read_text())
    client = workspace.client()
    version = client.get_model_version("vaelab-vae", "2")
    assert (
        version.tags["dvc_exp_name"] == "kl 1.0/x"
        and version.tags["dvc_exp_baseline_rev"] == "b" * 40
    )
    assert version.tags["champion_pending"] == "true"
    run = client.get_run(version.run_id)
    assert run.data.tags["dvc_exp_name"] == "kl 1.0/x" and run.data.tags["stage"] == "register"

    # The experiment applied and committed: a plain repro meets its weights, and the version
    # registered in the experiment competes now, as if new.
    monkeypatch.delenv("DVC_EXP_NAME")
    monkeypatch.delenv("DVC_EXP_BASELINE_REV")
    again = register(workspace)["variants"]["vae"]
    assert again["version"] == 2 and again["registered"] is False
    assert again["champion"]["moved"] is True and again["aliases"]["champion"] == 2
    assert "version 2 beats champion version 1" in again["champion"]["reason"]
    assert "champion_pending" not in client.get_model_version("vaelab-vae", "2").tags
    # It has competed: the next repro reuses it without a new decision.
    assert "already the champion" in register(workspace)["variants"]["vae"]["champion"]["reason"]


def test_an_experiment_before_any_champion_leaves_none(workspace, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "first")
    train(workspace, 0, 0.05)
    vae = register(workspace)["variants"]["vae"]
    assert vae["aliases"] == {"exp-first": 1, "latest": 1} and vae["champion"]["version"] is None
    assert "no champion yet" in vae["champion"]["reason"]


def _git(cwd, *args):
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def test_uncommitted_params_hold_champion_until_they_are_committed(workspace):
    _git(workspace.root, "init", "-q")
    (workspace.root / "params.yaml").write_text("seed: 0\n")
    _git(workspace.root, "add", "params.yaml")
    _git(workspace.root, "commit", "-qm", "params")
    train(workspace, 0, 0.05)
    assert register(workspace)["champion_rule"]["kind"] == "repro"

    (workspace.root / "params.yaml").write_text("seed: 1\n")
    train(workspace, 1, 0.01)
    report = register(workspace)
    vae = report["variants"]["vae"]
    assert report["champion_rule"] == {
        "kind": "uncommitted-params",
        "experiment": None,
        "alias": None,
    }
    assert vae["version"] == 2 and vae["aliases"] == {"champion": 1, "latest": 2}
    assert (
        "params.yaml has uncommitted changes: champion stays at version 1"
        in vae["champion"]["reason"]
    )

    _git(workspace.root, "commit", "-qam", "the new params")
    moved = register(workspace)["variants"]["vae"]
    assert moved["champion"]["moved"] is True and moved["aliases"]["champion"] == 2


def _write_params(ws):
    params = {
        "data": TINY_DATA,
        "models": {"vae": TINY_MODELS["vae"]},
        "registry": {"retries": 2, "backoff": 0.1, "timeout": 2.0},
    }
    (ws.root / "params.yaml").write_text(yaml.safe_dump(params))


def test_vaelab_promote_moves_champion_by_version_by_alias_or_to_the_workspace_weights(
    workspace, monkeypatch, capsys
):
    _write_params(workspace)
    train(workspace, 0, 0.05)
    register(workspace)
    monkeypatch.setenv("DVC_EXP_NAME", "worse")
    train(workspace, 1, 0.09)
    register(workspace)
    monkeypatch.delenv("DVC_EXP_NAME")
    client = workspace.client()

    def champion() -> int:
        return int(client.get_model_version_by_alias("vaelab-vae", "champion").version)

    main(["promote", "vae", "--alias", "exp-worse"])
    assert (
        champion() == 2
        and "champion_pending" not in client.get_model_version("vaelab-vae", "2").tags
    )
    assert "vaelab-vae: champion -> version 2 (was version 1)" in capsys.readouterr().out
    main(["promote", "vae", "--version", "1"])
    assert champion() == 1
    main(["promote", "vae"])  # models/vae holds the seed-1 weights: version 2
    assert champion() == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--alias", "exp-nope"], "vaelab-vae has no alias 'exp-nope' (its aliases: champion)"),
        (["--version", "7"], "vaelab-vae has no version 7"),
        ([], "are not registered in vaelab-vae; run `dvc repro register` first"),
    ],
)
def test_promote_errors_name_what_is_missing(workspace, capsys, args, message):
    _write_params(workspace)
    train(workspace, 0, 0.05)
    register(workspace)
    save_variant(workspace.models, "vae", seed=5)  # weights no version has
    with pytest.raises(SystemExit) as exit_info:
        main(["promote", "vae", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert int(workspace.client().get_model_version_by_alias("vaelab-vae", "champion").version) == 1
