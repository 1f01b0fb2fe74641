"""CelebA download from every kind of source, on a tiny CelebA the tests write."""

from __future__ import annotations

import hashlib
import json
import socket
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.support.celeba import (
    ATTRIBUTES,
    image_zip_bytes,
    make_celeba,
    official_texts,
    write_kaggle,
    write_official,
    zip_tree,
)
from tests.support.http import serve_directory
from vaelab.data import fetch
from vaelab.data.datasets import celeba
from vaelab.data.download import run_download
from vaelab.data.fetch import ChecksumError
from vaelab.data.prepare import run_prepare
from vaelab.errors import UserError
from vaelab.io.hashing import md5sum

N = 12


@pytest.fixture
def tiny():
    return make_celeba(N)


@pytest.fixture
def official_sums(tiny, monkeypatch):
    """Stand the tiny files' md5s in for the official ones."""
    payloads = {"img_align_celeba.zip": image_zip_bytes(tiny), **official_texts(tiny)}
    table = tuple(replace(f, md5=hashlib.md5(payloads[f.name]).hexdigest()) for f in celeba.FILES)
    monkeypatch.setattr(celeba, "FILES", table)
    monkeypatch.setattr(celeba, "ANNOTATION_FILES", table[1:])
    return {f.name: f.md5 for f in table}


def _params(make_params, source, **data):
    return make_params(
        {
            "data": {
                "dataset": "celeba",
                "crop": {"method": "center", "size": 148},
                "celeba": {"source": str(source)},
                **data,
            }
        }
    )


def _assert_raw(raw: Path, tiny, *, identities=True):
    images = sorted(p.name for p in (raw / "img_align_celeba").iterdir())
    assert images == tiny.names
    manifest = json.loads((raw / "MANIFEST.json").read_text())
    listed = {f["file"]: f for f in manifest["files"]}
    assert f"img_align_celeba/{tiny.names[0]}" in listed
    first = raw / "img_align_celeba" / tiny.names[0]
    assert listed[f"img_align_celeba/{tiny.names[0]}"] == {
        "file": f"img_align_celeba/{tiny.names[0]}",
        "bytes": first.stat().st_size,
        "md5": md5sum(first),
    }
    table = celeba.read_attributes(raw / "list_attr_celeba.txt")
    assert list(table.columns) == ATTRIBUTES
    np.testing.assert_array_equal(table.to_numpy(), (tiny.attributes > 0).astype(np.int8))
    assert (raw / "list_eval_partition.txt").is_file()
    assert (raw / "identity_CelebA.txt").is_file() == identities


def _write_extracted_official(folder: Path, tiny) -> None:
    """The official layout with the image zip already extracted."""
    write_official(folder, tiny, skip=("img_align_celeba.zip",))
    images = folder / "img_align_celeba"
    images.mkdir()
    for name, jpeg in zip(tiny.names, tiny.jpegs, strict=True):
        (images / name).write_bytes(jpeg)


def test_official_folder(tmp_path, make_params, tiny, official_sums):
    write_official(tmp_path / "src", tiny)
    raw = run_download(_params(make_params, tmp_path / "src"), raw_root=tmp_path / "raw")
    _assert_raw(raw, tiny)


def test_official_folder_with_extracted_images(tmp_path, make_params, tiny, official_sums):
    _write_extracted_official(tmp_path / "src", tiny)
    raw = run_download(_params(make_params, tmp_path / "src"), raw_root=tmp_path / "raw")
    _assert_raw(raw, tiny)


def test_zip_of_the_official_folder(tmp_path, make_params, tiny, official_sums):
    _write_extracted_official(tmp_path / "src", tiny)
    archive = zip_tree(tmp_path / "src", tmp_path / "celeba.zip")
    raw = run_download(_params(make_params, archive), raw_root=tmp_path / "raw")
    _assert_raw(raw, tiny)


@pytest.mark.parametrize("as_zip", [False, True])
def test_kaggle_layout(tmp_path, make_params, tiny, as_zip):
    write_kaggle(tmp_path / "kaggle", tiny)
    source = (
        zip_tree(tmp_path / "kaggle", tmp_path / "archive.zip") if as_zip else tmp_path / "kaggle"
    )
    raw = run_download(_params(make_params, source), raw_root=tmp_path / "raw")
    _assert_raw(raw, tiny, identities=False)
    # The CSV is rewritten byte for byte in the official text format.
    assert (raw / "list_attr_celeba.txt").read_bytes() == official_texts(tiny)[
        "list_attr_celeba.txt"
    ]
    assert (raw / "list_eval_partition.txt").read_bytes() == official_texts(tiny)[
        "list_eval_partition.txt"
    ]
    np.testing.assert_array_equal(
        celeba.read_landmarks(raw / "list_landmarks_align_celeba.txt").to_numpy(), tiny.landmarks
    )
    manifest = json.loads((raw / "MANIFEST.json").read_text())
    assert "identity_CelebA.txt" in manifest["missing"]


def test_url_source_resumes_after_a_cut_connection(tmp_path, make_params, tiny, official_sums):
    write_official(tmp_path / "served", tiny)
    size = (tmp_path / "served" / "img_align_celeba.zip").stat().st_size
    cut = fetch._CHUNK + 1000
    assert size > cut
    with serve_directory(tmp_path / "served", cut_after={"img_align_celeba.zip": cut}) as server:
        raw = run_download(_params(make_params, server.url), raw_root=tmp_path / "raw")
        zip_requests = [r for r in server.requests if r.path.endswith("img_align_celeba.zip")]
    _assert_raw(raw, tiny)
    assert len(zip_requests) == 2
    # Resumed from the last whole chunk written before the cut, not from zero.
    assert zip_requests[1].range == f"bytes={fetch._CHUNK}-"
    # The download cache keeps the verified zip, so a rerun makes no request for it.
    cached = tmp_path / "downloads" / "celeba" / "img_align_celeba.zip"
    assert md5sum(cached) == official_sums["img_align_celeba.zip"]


def test_url_source_md5_mismatch_names_file_and_sums(
    tmp_path, make_params, tiny, official_sums, monkeypatch
):
    write_official(tmp_path / "served", tiny)
    (tmp_path / "served" / "list_attr_celeba.txt").write_bytes(b"edited\r\n")
    with serve_directory(tmp_path / "served") as server, pytest.raises(ChecksumError) as info:
        run_download(_params(make_params, server.url), raw_root=tmp_path / "raw")
    message = str(info.value)
    assert "list_attr_celeba.txt" in message and official_sums["list_attr_celeba.txt"] in message
    assert md5sum(tmp_path / "served" / "list_attr_celeba.txt") in message
    assert not (tmp_path / "raw" / "celeba").exists()


def test_md5_check_can_be_turned_off(tmp_path, make_params, tiny, official_sums, caplog):
    write_official(tmp_path / "src", tiny)
    (tmp_path / "src" / "identity_CelebA.txt").write_bytes(b"000001.jpg 7\r\n")
    params = _params(
        make_params, tmp_path / "src", celeba={"source": str(tmp_path / "src"), "verify_md5": False}
    )
    with caplog.at_level("WARNING"):
        run_download(params, raw_root=tmp_path / "raw")
    assert "identity_CelebA.txt" in caplog.text


def test_no_network_and_no_local_copy_lists_the_ways(tmp_path, make_params, monkeypatch):
    monkeypatch.setattr(fetch, "_sleep", lambda seconds: None)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(UserError) as info:
        run_download(
            _params(make_params, f"http://127.0.0.1:{port}/celeba"), raw_root=tmp_path / "raw"
        )
    message = str(info.value)
    assert "Ways to supply CelebA" in message and "gdrive" in message and "Kaggle" in message
    with pytest.raises(UserError, match="does not exist"):
        run_download(_params(make_params, tmp_path / "nowhere"), raw_root=tmp_path / "raw")
    assert not (tmp_path / "raw" / "celeba").exists()


def test_gdrive_uses_the_official_ids(tmp_path, make_params, tiny, official_sums, monkeypatch):
    import gdown

    write_official(tmp_path / "drive", tiny)
    by_id = {f.drive_id: tmp_path / "drive" / f.name for f in celeba.FILES}
    asked = []

    def fake_download(*, id, output, **kwargs):
        asked.append(id)
        Path(output).write_bytes(by_id[id].read_bytes())
        return output

    monkeypatch.setattr(gdown, "download", fake_download)
    raw = run_download(_params(make_params, "gdrive"), raw_root=tmp_path / "raw")
    _assert_raw(raw, tiny)
    assert sorted(asked) == sorted(f.drive_id for f in celeba.FILES)


def test_gdrive_failure_is_a_user_error(tmp_path, make_params, monkeypatch):
    import gdown
    import requests

    def offline(**kwargs):
        raise requests.ConnectionError("Name or service not known")

    monkeypatch.setattr(gdown, "download", offline)
    with pytest.raises(UserError, match="Ways to supply CelebA"):
        run_download(_params(make_params, "gdrive"), raw_root=tmp_path / "raw")


def test_html_error_page_saved_as_the_file_is_refused(tmp_path, make_params, tiny, official_sums):
    write_official(tmp_path / "src", tiny)
    (tmp_path / "src" / "list_attr_celeba.txt").write_text(
        "<!DOCTYPE html><html>Quota exceeded</html>"
    )
    with pytest.raises(UserError, match="HTML page"):
        run_download(_params(make_params, tmp_path / "src"), raw_root=tmp_path / "raw")


def test_optional_file_missing_fails_only_when_needed(tmp_path, make_params, tiny, official_sums):
    write_official(tmp_path / "src", tiny, skip=("list_landmarks_align_celeba.txt",))
    run_download(_params(make_params, tmp_path / "src"), raw_root=tmp_path / "raw")
    common = {
        "raw_root": tmp_path / "raw",
        "out_dir": tmp_path / "prepared",
        "metrics_path": tmp_path / "data.json",
        "progress": False,
    }
    run_prepare(_params(make_params, tmp_path / "src", split={"val": 0.2, "test": 0.2}), **common)
    with pytest.raises(UserError, match=r"list_landmarks_align_celeba\.txt is missing"):
        run_prepare(_params(make_params, tmp_path / "src", crop={"method": "landmarks"}), **common)


def test_prepare_celeba_official_split_attributes_and_a_corrupt_jpeg(
    tmp_path, make_params, tiny, official_sums
):
    corrupt = {tiny.names[3]: tiny.jpegs[3][: len(tiny.jpegs[3]) // 2]}
    write_official(tmp_path / "src", tiny)
    # A truncated JPEG inside the zip: skipped, counted and listed with its reason.
    (tmp_path / "src" / "img_align_celeba.zip").write_bytes(image_zip_bytes(tiny, corrupt))
    params = _params(
        make_params,
        tmp_path / "src",
        celeba={"source": str(tmp_path / "src"), "verify_md5": False},
        split={"method": "official"},
        image_size=24,
        channels=3,
        max_bad_fraction=0.1,
        crop={"method": "box"},
    )
    run_download(params, raw_root=tmp_path / "raw")
    metrics = run_prepare(
        params,
        raw_root=tmp_path / "raw",
        out_dir=tmp_path / "prepared",
        metrics_path=tmp_path / "data.json",
        progress=False,
    )
    images = np.load(tmp_path / "prepared" / "images.npy")
    assert images.shape == (N - 1, 24, 24, 3) and images.dtype == np.uint8
    assert metrics["skipped"]["count"] == 1
    assert metrics["skipped"]["files"][0]["image_id"] == tiny.names[3]
    assert metrics["splits"] == {"train": N - 5, "val": 2, "test": 2, "ood": 0}
    index = pd.read_csv(tmp_path / "prepared" / "index.csv")
    assert list(index.columns[:2]) == ["image_id", "split"]
    assert set(ATTRIBUTES) <= set(index.columns) and "identity" in index.columns
    assert set(np.unique(index[ATTRIBUTES].to_numpy())) <= {0, 1}
