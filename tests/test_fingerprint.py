"""A metric ranks only versions evaluated on the same data and settings: every version carries
a data and evaluation fingerprint, and champion moves only among versions with the fingerprint
of the current evaluation (issue 13, item 1)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.support.trained import (
    IMAGE_SIZE,
    TINY_DATA,
    TINY_MODELS,
    evaluated_on,
    save_variant,
    tiny_params,
    workspace_fixture,
    write_eval,
)
from vaelab.cli import main
from vaelab.config import params_from_dict
from vaelab.config.evaluated_on import RUN_ONLY
from vaelab.config.evaluated_on import evaluated_on as record_of
from vaelab.io.hashing import md5_of_array
from vaelab.models.saved import load_config
from vaelab.registry.champion import best_version
from vaelab.registry.inputs import (
    FIELDS_TAG,
    FINGERPRINT_TAG,
    NO_FINGERPRINT,
    of_evaluation,
    of_tags,
)
from vaelab.registry.register import run_register

workspace = pytest.fixture(workspace_fixture)

SMALL = 7  # the data.image_size
SMALL_MD5 = "0badf00d" * 4  # the md5 of a 7x7 test split


def register(ws, metric="recon.mse", mode="min"):
    return run_register(
        tiny_params(registry={"metric": metric, "mode": mode}),
        models_root=ws.models,
        metrics_root=ws.metrics,
    )["variants"]["vae"]


def train(ws, seed, mse, *, image_size=IMAGE_SIZE, record=None):
    """Stand-in for train + evaluate: weights from ``seed`` on ``image_size`` data,
    ``recon.mse`` = ``mse``."""
    save_variant(ws.models, "vae", seed=seed, image_size=image_size)
    if record is None:
        record = evaluated_on() if image_size == IMAGE_SIZE else evaluated_on(test_md5=SMALL_MD5)
    write_eval(ws.metrics, "vae", mse, record=record)


def champion_of(ws) -> int:
    return int(ws.client().get_model_version_by_alias("vaelab-vae", "champion").version)


def saved_config(tmp_path, **data):
    folder = save_variant(tmp_path / "models", "vae")
    config = load_config(folder / "seed0" / "config.json")
    return config.model_copy(update={"data": config.data.model_copy(update=data)})


# --------------------------------------------------------------------------- the fingerprint


def test_the_fingerprint_is_what_the_variant_was_trained_and_evaluated_on(tmp_path):
    config = saved_config(tmp_path)
    fingerprint = of_evaluation(config, evaluated_on())
    assert fingerprint.fields == {
        "dataset": "lfw",
        "image_size": IMAGE_SIZE,
        "channels": 1,
        "resample": "bicubic",
        "limit": None,
        "crop": {"method": "center", "size": None},
        "split": {"method": "random", "val": 0.1, "test": 0.1},
        "test_md5": evaluated_on()["test_md5"],
        "evaluate": evaluated_on()["settings"],
    }
    assert len(fingerprint.id) == 12 and int(fingerprint.id, 16) >= 0
    tags = fingerprint.tags()
    assert (
        tags[FINGERPRINT_TAG] == fingerprint.id
        and json.loads(tags[FIELDS_TAG]) == fingerprint.fields
    )
    assert of_tags(tags, "v1").fingerprint == fingerprint

    # The settings of crop methods not in use change no pixel, and so no fingerprint.
    other_detector = config.data.crop.model_copy(
        update={"detect": config.data.crop.detect.model_copy(update={"margin": 2.0})}
    )
    assert (
        of_evaluation(saved_config(tmp_path, crop=other_detector), evaluated_on()).id
        == fingerprint.id
    )
    boxed = config.data.crop.model_copy(update={"method": "box"})
    assert of_evaluation(saved_config(tmp_path, crop=boxed), evaluated_on()).fields["crop"] == {
        "method": "box",
        "box": {"top": 40, "bottom": 188, "left": 15, "right": 163},
    }


def test_evaluate_records_the_test_split_md5_and_the_settings_that_can_change_a_number():
    params = params_from_dict(
        {
            "seed": 3,
            "data": TINY_DATA,
            "models": {"vae": TINY_MODELS["vae"]},
            "evaluate": {"samples": 16, "batch_size": 7},
        }
    )
    test = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4, 1)
    record = record_of(params, test)
    assert record["test_md5"] == md5_of_array(test) != md5_of_array(test[::-1])
    assert md5_of_array(test) != md5_of_array(
        test.reshape(2, 16, 1, 1)
    )  # the same bytes, another shape
    assert record["settings"]["seed"] == 3 and record["settings"]["samples"] == 16
    assert not RUN_ONLY & set(record["settings"]) and "batch_size" not in record["settings"]
    # Where the Inception weights lie changes no number (their checksum is checked): not recorded.
    moved = params.model_copy(
        update={
            "evaluate": params.evaluate.model_copy(
                update={
                    "inception": params.evaluate.inception.model_copy(
                        update={"weights": "/elsewhere/w.pth"}
                    )
                }
            )
        }
    )
    assert record_of(moved, test) == record and record["settings"]["inception"] == {
        "enabled": True,
        "kid_subsets": 100,
        "kid_subset_size": 1000,
    }


@pytest.mark.parametrize(
    ("metric", "changed", "compared"),
    [
        ("recon.mse", {"samples": 8}, True),  # recon.* reads the test split alone
        ("recon.psnr", {"seed": 1}, True),
        ("elbo", {"samples": 8}, True),
        ("elbo", {"seed": 1}, False),  # the ELBO's draws are seeded
        (
            "blur.laplacian_var.sample",
            {"samples": 8},
            False,
        ),  # a group not listed depends on every setting
        ("inception.fid.sample", {"samples": 8}, False),  # FID and KID: the samples' draws,
        ("inception.kid.recon", {"radii": [1.0]}, True),  # not the other experiments' settings
    ],
)
def test_a_metric_compares_versions_whose_settings_differ_only_where_it_does_not_depend_on_them(
    tmp_path, metric, changed, compared
):
    config = saved_config(tmp_path)
    current, other = (
        of_evaluation(config, evaluated_on()),
        of_evaluation(config, evaluated_on(**changed)),
    )
    assert current.id != other.id
    differences = current.differences(other, metric)
    assert (differences == []) is compared
    if not compared:
        ((name, value),) = changed.items()
        assert differences == [
            f"evaluate.{name} {value} (current {evaluated_on()['settings'][name]})"
        ]


def test_other_data_is_named_field_by_field(tmp_path):
    current = of_evaluation(saved_config(tmp_path), evaluated_on())
    other = of_evaluation(
        saved_config(tmp_path, dataset="mnist").model_copy(update={"image_size": SMALL}),
        evaluated_on(test_md5=SMALL_MD5),
    )
    assert current.differences(other, "recon.mse") == [
        'dataset "mnist" (current "lfw")',
        f"image_size {SMALL} (current {IMAGE_SIZE})",
        f"test_md5 {SMALL_MD5[:8]} (current {evaluated_on()['test_md5'][:8]})",
    ]


@pytest.mark.parametrize(
    ("tags", "why"),
    [
        ({}, NO_FINGERPRINT),
        ({FIELDS_TAG: "{not json"}, "its fingerprint.fields tag is not JSON"),
        ({FIELDS_TAG: "[1, 2]"}, "its fingerprint.fields tag is not a JSON object"),
    ],
)
def test_a_version_without_a_readable_fingerprint_is_not_compared_and_nothing_crashes(tags, why):
    tagged = of_tags(tags, "vaelab-vae version 1")
    assert tagged.fingerprint is None and tagged.id is None and tagged.missing.startswith(why)


def test_the_best_version_is_the_lowest_or_highest_and_a_tie_goes_to_the_candidate_then_the_newer():
    assert best_version({1: 0.3, 2: 0.1, 3: 0.2}, "min", prefer=3) == 2
    assert best_version({1: 0.3, 2: 0.1, 3: 0.2}, "max", prefer=3) == 1
    assert best_version({1: 0.1, 2: 0.1, 3: 0.1}, "min", prefer=2) == 2
    assert best_version({1: 0.1, 2: 0.1, 3: 0.5}, "min", prefer=3) == 2


# --------------------------------------------------------------------------- the scenario


def test_champion_follows_the_data_of_the_params_and_comes_back_when_they_are_reverted(workspace):
    """data.image_size: 7 registers 7x7 models with a lower recon.mse; after reverting the params
    champion must be an original-data version again, and @champion generate original-size faces."""
    train(workspace, 0, 0.05)
    first = register(workspace)
    assert (
        first["champion"]["version"] == 1
        and first["compared"] == [1]
        and first["not_compared"] == []
    )
    original = first["fingerprint"]
    assert (
        original["fields"]["image_size"] == IMAGE_SIZE
        and original["fields"]["test_md5"] == evaluated_on()["test_md5"]
    )
    assert original["compared_on"] == [
        "dataset",
        "image_size",
        "channels",
        "resample",
        "limit",
        "crop",
        "split",
        "test_md5",
    ]  # recon.mse depends on no evaluation setting

    # data.image_size: 7 — new data: a lower mse, but not on the same images.
    train(workspace, 1, 0.01, image_size=SMALL)
    small = register(workspace)
    assert small["version"] == 2 and small["fingerprint"]["id"] != original["id"]
    assert (
        small["compared"] == [2]
        and small["champion"]["version"] == 2
        and small["champion"]["moved"] is True
    )
    assert small["not_compared"] == [
        {
            "version": 1,
            "fingerprint": original["id"],
            "reason": (
                f"evaluated on other data or settings: image_size {IMAGE_SIZE} "
                f"(current {SMALL}), test_md5 {evaluated_on()['test_md5'][:8]} "
                f"(current {SMALL_MD5[:8]})"
            ),
        }
    ]
    assert small["champion"]["reason"].startswith(
        "champion version 1 is not compared with the current evaluation"
    )
    assert (
        "version 2 becomes champion, the only version evaluated on the current data"
        in small["champion"]["reason"]
    )

    # The params reverted: the original weights again (version 1, unchanged), on the original data.
    train(workspace, 0, 0.05)
    back = register(workspace)
    assert back["version"] == 1 and back["registered"] is False and back["retagged"] is None
    assert back["fingerprint"]["id"] == original["id"]
    assert back["champion"]["version"] == 1 and back["champion"]["moved"] is True
    assert "champion stays at version 2" not in back["champion"]["reason"]
    assert back["champion"]["reason"] == (
        f"champion version 2 is not compared with the current evaluation (evaluated on other "
        f"data or settings: image_size {SMALL} (current {IMAGE_SIZE}), test_md5 {SMALL_MD5[:8]} "
        f"(current {evaluated_on()['test_md5'][:8]})): version 1 becomes champion, the only "
        "version evaluated on the current data and settings (recon.mse = 0.05)"
    )
    assert [entry["version"] for entry in back["not_compared"]] == [2]
    assert back == json.loads((workspace.metrics / "registry.json").read_text())["variants"]["vae"]
    assert champion_of(workspace) == 1

    out = workspace.root / "samples.png"
    main(["generate", "--model", "models:/vaelab-vae@champion", "-n", "1", "--out", str(out)])
    with Image.open(out) as image:
        assert image.size == (
            IMAGE_SIZE + 2,
            IMAGE_SIZE + 2,
        )  # one original-size tile and its border

    # Among the original-data versions the usual rule holds; the 7x7 version stays out of it.
    train(workspace, 2, 0.04)
    better = register(workspace)
    assert better["champion"]["version"] == 3 and better["compared"] == [1, 3]
    assert (
        better["champion"]["reason"]
        == "version 3 beats champion version 1: recon.mse 0.04 < 0.05 (lower is better)"
    )


def test_an_incomparable_champion_gives_way_to_the_best_comparable_version_not_to_the_newest(
    workspace,
):
    for seed, mse in ((0, 0.03), (1, 0.05)):
        train(workspace, seed, mse)
        register(workspace)
    train(workspace, 2, 0.01, image_size=SMALL)
    assert register(workspace)["champion"]["version"] == 3
    train(workspace, 3, 0.04)  # the params reverted, retrained: other weights, the original data
    back = register(workspace)
    assert (
        back["version"] == 4 and back["champion"]["version"] == 1 and back["compared"] == [1, 2, 4]
    )
    assert (
        "version 1 becomes champion, the best (lowest recon.mse) of 3 versions"
        in back["champion"]["reason"]
    )
    assert "(recon.mse = 0.03)" in back["champion"]["reason"]


def test_versions_registered_before_fingerprints_are_not_compared_and_the_current_one_is_tagged(
    workspace,
):
    train(workspace, 0, 0.05)
    register(workspace)
    train(workspace, 1, 0.01)  # champion: its data is unknown once the tags are gone
    register(workspace)
    client = workspace.client()
    for number in ("1", "2"):
        for tag in (FINGERPRINT_TAG, FIELDS_TAG):
            client.delete_model_version_tag("vaelab-vae", number, tag)

    train(
        workspace, 0, 0.05
    )  # register meets version 1's weights: it takes the current evaluation's tags
    outcome = register(workspace)
    assert outcome["version"] == 1 and outcome["registered"] is False
    assert outcome["retagged"] == {"version": 1, "fingerprint_was": None, "why": NO_FINGERPRINT}
    tags = client.get_model_version("vaelab-vae", "1").tags
    assert (
        tags[FINGERPRINT_TAG] == outcome["fingerprint"]["id"]
        and float(tags["metric.recon.mse"]) == 0.05
    )
    assert outcome["not_compared"] == [
        {"version": 2, "fingerprint": None, "reason": NO_FINGERPRINT}
    ]
    assert outcome["champion"]["version"] == 1
    assert (
        f"champion version 2 is not compared with the current evaluation ({NO_FINGERPRINT})"
        in outcome["champion"]["reason"]
    )
    assert (
        "fingerprint `" + outcome["fingerprint"]["id"]
        in client.get_model_version("vaelab-vae", "1").description
    )


def test_new_evaluation_settings_retag_the_same_weights_and_rank_only_the_metrics_they_change(
    workspace,
):
    train(workspace, 0, 0.05)
    register(workspace)
    train(workspace, 1, 0.08)
    assert register(workspace)["champion"]["version"] == 1

    # evaluate.samples changed: the same weights, evaluated anew; recon.mse does not depend on it.
    write_eval(workspace.metrics, "vae", 0.08, record=evaluated_on(samples=8))
    same = register(workspace)
    assert (
        same["version"] == 2
        and same["retagged"]["version"] == 2
        and same["retagged"]["why"] is None
    )
    assert (
        same["compared"] == [1, 2]
        and same["champion"]["version"] == 1
        and same["champion"]["moved"] is False
    )
    assert "model unchanged since version 2" in same["champion"]["reason"]
    assert (
        json.loads(workspace.client().get_model_version("vaelab-vae", "2").tags[FIELDS_TAG])[
            "evaluate"
        ]["samples"]
        == 8
    )

    # A metric that depends on the samples: version 1 was measured with other draws, not comparable.
    sample = register(workspace, metric="blur.laplacian_var.sample", mode="max")
    assert sample["compared"] == [2] and sample["champion"]["version"] == 2
    assert "evaluate.samples 64 (current 8)" in sample["champion"]["reason"]


def test_weights_evaluated_anew_like_the_champion_compete_with_it_as_if_new(workspace):
    """The ELBO depends on evaluate's seed: a version measured with another seed has not
    competed with the champion until register meets its weights evaluated like it."""

    def evaluate(seed, elbo, eval_seed):
        save_variant(workspace.models, "vae", seed=seed)
        write_eval(workspace.metrics, "vae", 0.05, record=evaluated_on(seed=eval_seed), elbo=elbo)
        return register(workspace, metric="elbo", mode="max")

    assert evaluate(0, -100.0, 0)["champion"]["version"] == 1
    other_seed = evaluate(1, -50.0, 1)
    assert other_seed["champion"]["version"] == 2 and other_seed["not_compared"][0]["reason"] == (
        "evaluated on other data or settings: evaluate.seed 0 (current 1)"
    )
    back = evaluate(
        2, -90.0, 0
    )  # version 2 is not comparable: the better of versions 1 and 3 takes over
    assert (
        back["champion"]["version"] == 3
        and "the best (highest elbo) of 2 versions" in back["champion"]["reason"]
    )
    again = evaluate(1, -70.0, 0)
    assert again["version"] == 2 and again["retagged"] == {
        "version": 2,
        "fingerprint_was": other_seed["fingerprint"]["id"],
        "why": "evaluated on other data or settings: evaluate.seed 1 (current 0)",
    }
    assert (
        again["champion"]["reason"]
        == "version 2 beats champion version 3: elbo -70 > -90 (higher is better)"
    )
    assert champion_of(workspace) == 2 and again["compared"] == [1, 2, 3]


# -------------------------------------------------------------------------- experiments and promote


def test_an_experiment_on_other_data_gets_its_alias_and_says_why_champion_is_not_its_peer(
    workspace, monkeypatch
):
    train(workspace, 0, 0.05)
    register(workspace)
    monkeypatch.setenv("DVC_EXP_NAME", "small")
    train(workspace, 1, 0.01, image_size=SMALL)
    exp = register(workspace)
    assert (
        exp["aliases"] == {"champion": 1, "exp-small": 2, "latest": 2}
        and exp["champion"]["moved"] is False
    )
    assert exp["compared"] == [2] and [entry["version"] for entry in exp["not_compared"]] == [1]
    assert (
        f"champion version 1 is not compared with this evaluation (evaluated on other data or "
        f"settings: image_size {IMAGE_SIZE} (current {SMALL})"
    ) in exp["champion"]["reason"]

    # An experiment leaves the tags of the versions it reuses alone (other evaluation settings
    # here).
    train(workspace, 0, 0.05, record=evaluated_on(samples=8))
    reused = register(workspace)
    assert reused["version"] == 1 and reused["retagged"] is None
    assert (
        json.loads(workspace.client().get_model_version("vaelab-vae", "1").tags[FIELDS_TAG])[
            "evaluate"
        ]["samples"]
        == 64
    )

    # Applied and committed: a plain repro on the 7x7 data makes the 7x7 version champion.
    monkeypatch.delenv("DVC_EXP_NAME")
    train(workspace, 1, 0.01, image_size=SMALL)
    applied = register(workspace)
    assert applied["version"] == 2 and applied["champion"]["version"] == 2
    assert "champion_pending" not in workspace.client().get_model_version("vaelab-vae", "2").tags


def _write_params(ws):
    import yaml

    params = {
        "data": TINY_DATA,
        "models": {"vae": TINY_MODELS["vae"]},
        "registry": {"retries": 2, "backoff": 0.1, "timeout": 2.0},
    }
    (ws.root / "params.yaml").write_text(yaml.safe_dump(params))


def test_promote_refuses_a_version_of_other_data_unless_forced(workspace, capsys):
    _write_params(workspace)
    train(workspace, 1, 0.01, image_size=SMALL)
    register(workspace)
    train(workspace, 0, 0.05)
    assert register(workspace)["champion"]["version"] == 2
    capsys.readouterr()

    with pytest.raises(SystemExit) as exit_info:
        main(["promote", "vae", "--version", "1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert (
        f"vaelab-vae version 1 is not comparable with the current evaluation of vae (evaluated on "
        f"other data or settings: image_size {SMALL} (current {IMAGE_SIZE})"
    ) in err
    assert "pass --force" in err and "Traceback" not in err
    assert champion_of(workspace) == 2

    main(["promote", "vae", "--version", "1", "--force"])
    out = capsys.readouterr().out
    assert (
        champion_of(workspace) == 1
        and "--force: not checked against the workspace's evaluation" in out
    )
    fingerprint = workspace.client().get_model_version("vaelab-vae", "1").tags[FINGERPRINT_TAG]
    assert f"(data and evaluation fingerprint {fingerprint})" in out
    # The workspace's data is still the original: the next repro moves champion back to it.
    assert register(workspace)["champion"]["version"] == 2

    main(["promote", "vae", "--version", "2"])  # comparable: no --force needed
    assert champion_of(workspace) == 2


def test_promote_without_the_workspaces_evaluation_says_how_to_check_or_skip(workspace, capsys):
    _write_params(workspace)
    train(workspace, 0, 0.05)
    register(workspace)
    (workspace.metrics / "detail" / "eval" / "vae.json").unlink()
    with pytest.raises(SystemExit):
        main(["promote", "vae", "--version", "1"])
    err = capsys.readouterr().err
    assert "metrics/detail/eval/vae.json: not found" in err and "--force skips the check" in err
    main(["promote", "vae", "--version", "1", "--force"])
    assert champion_of(workspace) == 1
