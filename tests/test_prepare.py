"""The prepare stage on the embedded lfw data and on tiny MNIST / CIFAR-10 archives."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.support.http import serve_directory
from vaelab.data.datasets import cifar10, mnist
from vaelab.data.download import run_download
from vaelab.data.prepare import run_prepare
from vaelab.errors import UserError


def _prepare(params, tmp_path: Path, **kwargs):
    return run_prepare(
        params,
        raw_root=tmp_path / "raw",
        out_dir=tmp_path / "prepared",
        metrics_path=tmp_path / "metrics" / "data.json",
        progress=False,
        **kwargs,
    )


def test_lfw_shapes_splits_and_ood(tmp_path, make_params):
    params = make_params({"data": {"image_size": 20, "channels": 3}})
    run_download(params, raw_root=tmp_path / "raw")
    metrics = _prepare(params, tmp_path)
    images = np.load(tmp_path / "prepared" / "images.npy")
    index = pd.read_csv(tmp_path / "prepared" / "index.csv")
    assert images.shape == (200, 20, 20, 3) and images.dtype == np.uint8
    assert list(index.columns) == ["image_id", "split", "face"]
    assert metrics["splits"] == {"train": 80, "val": 10, "test": 10, "ood": 100}
    assert (index.loc[index["face"] == 0, "split"] == "ood").all()
    # Grey source, RGB requested: the three channels are equal.
    assert (images[..., 0] == images[..., 2]).all()
    # The DVC metrics are two counts; the splits, the file list, the shape and the timings sit
    # beside them.
    metrics_dir = tmp_path / "metrics"
    assert json.loads((metrics_dir / "data.json").read_text()) == {"images": 200, "skipped": 0}
    detail = json.loads((metrics_dir / "detail" / "data.json").read_text())
    assert (
        detail["splits"] == {"train": 80, "val": 10, "test": 10, "ood": 100}
        and detail["image_shape"] == [20, 20, 3]
        and detail["skipped"]["files"] == []
        and "seconds" not in detail
    )
    assert set(json.loads((metrics_dir / "timing" / "data.json").read_text())) == {
        "workers",
        "kernels",
        "seconds",
        "images_per_second",
    }


def test_same_inputs_give_byte_identical_outputs(tmp_path, make_params):
    params = make_params()
    run_download(params, raw_root=tmp_path / "raw")
    _prepare(params, tmp_path)
    first = (
        (tmp_path / "prepared" / "images.npy").read_bytes(),
        (tmp_path / "prepared" / "index.csv").read_bytes(),
    )
    _prepare(make_params({"data": {"workers": 2}}), tmp_path)
    second = (
        (tmp_path / "prepared" / "images.npy").read_bytes(),
        (tmp_path / "prepared" / "index.csv").read_bytes(),
    )
    assert hashlib.md5(first[0]).digest() == hashlib.md5(second[0]).digest()
    assert first[1] == second[1]


def test_the_fingerprint_is_the_md5_of_the_written_files_and_is_checked(
    tmp_path, make_params, monkeypatch
):
    """Hashed once as prepare writes: the md5 over images.npy then index.csv (what the train
    stages hashed themselves before, so older checkpoints keep their keys); reading it hashes
    nothing, and a file of another size or a missing fingerprint is a UserError naming the file."""
    from vaelab.data import prepared_data as prepared_module
    from vaelab.data.prepared_data import read_fingerprint
    from vaelab.io.hashing import md5_of_files

    params = make_params()
    run_download(params, raw_root=tmp_path / "raw")
    _prepare(params, tmp_path)
    folder = tmp_path / "prepared"
    expected = md5_of_files([folder / "images.npy", folder / "index.csv"])
    recorded = json.loads((folder / "fingerprint.json").read_text())
    assert recorded == {
        "md5": expected,
        "bytes": {
            "images.npy": (folder / "images.npy").stat().st_size,
            "index.csv": (folder / "index.csv").stat().st_size,
        },
    }

    def no_hashing(*_args, **_kwargs):
        raise AssertionError("read_fingerprint must not hash the files")

    monkeypatch.setattr(prepared_module.hashlib, "md5", no_hashing)
    assert read_fingerprint(folder) == expected
    monkeypatch.undo()

    with open(folder / "index.csv", "a") as handle:
        handle.write("extra,row\n")
    with pytest.raises(
        UserError, match=r"index\.csv: \d+ bytes, but prepare wrote \d+; rerun `dvc repro prepare`"
    ):
        read_fingerprint(folder)
    (folder / "fingerprint.json").unlink()
    with pytest.raises(UserError, match=r"fingerprint\.json: missing"):
        read_fingerprint(folder)


def test_a_cut_images_file_is_refused_naming_it_by_every_reader(tmp_path, make_params):
    """A prepared array cut short outside DVC: every stage that reads it (train's load_split,
    evaluate's, chain's and compare's load_prepared) says which file and what to run, before
    numpy's "mmap length is greater than file size"."""
    from vaelab.data.prepared_data import load_prepared, load_split

    params = make_params()
    run_download(params, raw_root=tmp_path / "raw")
    _prepare(params, tmp_path)
    folder = tmp_path / "prepared"
    images = folder / "images.npy"
    images.write_bytes(images.read_bytes()[:-100])
    for read in (lambda: load_prepared(folder), lambda: load_split(folder, "train")):
        with pytest.raises(UserError, match=r"images\.npy: \d+ bytes, but prepare wrote \d+"):
            read()


def test_seed_changes_the_random_split_only(tmp_path, make_params):
    run_download(make_params(), raw_root=tmp_path / "raw")
    _prepare(make_params(), tmp_path)
    a = pd.read_csv(tmp_path / "prepared" / "index.csv")
    _prepare(make_params({"seed": 1}), tmp_path)
    b = pd.read_csv(tmp_path / "prepared" / "index.csv")
    assert (a["image_id"] == b["image_id"]).all()
    assert (a["split"] != b["split"]).any()


def test_limit_and_dropping_nonfaces(tmp_path, make_params):
    run_download(make_params(), raw_root=tmp_path / "raw")
    metrics = _prepare(make_params({"data": {"lfw": {"nonfaces": False}, "limit": 50}}), tmp_path)
    assert metrics["images"] == 50
    assert metrics["splits"] == {"train": 40, "val": 5, "test": 5, "ood": 0}


def test_an_empty_split_says_which_and_how_to_fix(tmp_path, make_params):
    run_download(make_params(), raw_root=tmp_path / "raw")
    with pytest.raises(UserError) as info:
        _prepare(make_params({"data": {"limit": 4}}), tmp_path)
    assert "split 'val' is empty" in str(info.value) and "data.limit" in str(info.value)
    assert not (tmp_path / "prepared").exists() and not (tmp_path / "metrics").exists()


def test_prepare_without_download_is_a_user_error(tmp_path, make_params):
    with pytest.raises(UserError, match="run `dvc repro download` first"):
        _prepare(make_params(), tmp_path)


def test_too_many_bad_images_fails_and_writes_nothing(tmp_path, make_params):
    from tests.support.celeba import make_celeba, write_official

    tiny = make_celeba(10)
    broken = dict.fromkeys(tiny.names[:3], b"")
    write_official(tmp_path / "src", tiny, corrupt=broken)
    params = make_params(
        {
            "data": {
                "dataset": "celeba",
                "crop": {"method": "center", "size": 148},
                "celeba": {"source": str(tmp_path / "src"), "verify_md5": False},
                "max_bad_fraction": 0.2,
            }
        }
    )
    run_download(params, raw_root=tmp_path / "raw")
    with pytest.raises(UserError) as info:
        _prepare(params, tmp_path)
    assert "3 of 10 images" in str(info.value) and "data.max_bad_fraction" in str(info.value)
    assert not (tmp_path / "prepared").exists() and not (tmp_path / "metrics").exists()


def test_one_image_smaller_than_the_crop_is_skipped_not_fatal(tmp_path, make_params):
    from tests.support.celeba import make_celeba, write_official

    tiny = make_celeba(10)
    small = io.BytesIO()
    Image.fromarray(np.zeros((20, 20, 3), dtype=np.uint8)).save(small, format="JPEG")
    write_official(tmp_path / "src", tiny, corrupt={tiny.names[0]: small.getvalue()})
    params = make_params(
        {
            "data": {
                "dataset": "celeba",
                "crop": {"method": "center", "size": 148},
                "celeba": {"source": str(tmp_path / "src"), "verify_md5": False},
                "max_bad_fraction": 0.2,
            }
        }
    )
    run_download(params, raw_root=tmp_path / "raw")
    _prepare(params, tmp_path)
    detail = json.loads((tmp_path / "metrics" / "detail" / "data.json").read_text())
    (skip,) = detail["skipped"]["files"]
    assert skip["image_id"] == tiny.names[0] and skip["reason"].startswith(
        "smaller than the crop: crop.size 148"
    )
    assert np.load(tmp_path / "prepared" / "images.npy").shape[0] == 9


def _idx_gz(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)


def test_mnist_from_a_url_base_with_official_split(tmp_path, make_params, monkeypatch):
    rng = np.random.default_rng(0)
    served = tmp_path / "served"
    served.mkdir()
    counts = {"train": 30, "t10k": 8}
    payloads = {}
    for prefix, n in counts.items():
        payloads[f"{prefix}-images-idx3-ubyte.gz"] = _idx_gz(rng.integers(0, 256, (n, 28, 28)))
        payloads[f"{prefix}-labels-idx1-ubyte.gz"] = _idx_gz(rng.integers(0, 10, n))
    for name, payload in payloads.items():
        (served / name).write_bytes(payload)
    monkeypatch.setattr(
        mnist, "FILES", {k: hashlib.md5(v).hexdigest() for k, v in payloads.items()}
    )
    with serve_directory(served) as server:
        params = make_params(
            {
                "data": {
                    "dataset": "mnist",
                    "mnist": {"source": server.url},
                    "split": {"method": "official", "val": 0.2},
                }
            }
        )
        run_download(params, raw_root=tmp_path / "raw")
    metrics = _prepare(params, tmp_path)
    assert metrics["splits"] == {"train": 24, "val": 6, "test": 8, "ood": 0}
    index = pd.read_csv(tmp_path / "prepared" / "index.csv")
    assert list(index.columns) == ["image_id", "split", "label"]
    assert (index.loc[index["image_id"].str.startswith("test_"), "split"] == "test").all()


def test_cifar10_from_a_local_archive(tmp_path, make_params, monkeypatch):
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
            records = rng.integers(0, 256, (4, cifar10.RECORD_BYTES)).astype(np.uint8)
            records[:, 0] %= 10
            payload = records.tobytes()
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    archive = tmp_path / "src" / cifar10.ARCHIVE
    archive.parent.mkdir()
    archive.write_bytes(buffer.getvalue())
    monkeypatch.setattr(cifar10, "ARCHIVE_MD5", hashlib.md5(buffer.getvalue()).hexdigest())
    params = make_params(
        {
            "data": {
                "dataset": "cifar10",
                "channels": 3,
                "cifar10": {"source": str(archive.parent)},
                "split": {"method": "official", "val": 0.25},
            }
        }
    )
    run_download(params, raw_root=tmp_path / "raw")
    metrics = _prepare(params, tmp_path)
    assert metrics["splits"] == {"train": 15, "val": 5, "test": 4, "ood": 0}
    images, labels = cifar10.read_batch(
        tmp_path / "raw" / "cifar10" / "cifar-10-batches-bin" / "test_batch.bin"
    )
    assert images.shape == (4, 32, 32, 3) and labels.max() < 10


def test_cifar10_md5_mismatch_is_refused(tmp_path, make_params):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / cifar10.ARCHIVE).write_bytes(b"not the archive")
    params = make_params(
        {"data": {"dataset": "cifar10", "cifar10": {"source": str(tmp_path / "src")}}}
    )
    with pytest.raises(UserError, match=cifar10.ARCHIVE_MD5):
        run_download(params, raw_root=tmp_path / "raw")
    assert not (tmp_path / "raw" / "cifar10").exists()


@pytest.mark.parametrize("on_miss", ["center", "skip"])
def test_detect_without_faces_is_counted_not_failed(tmp_path, make_params, on_miss):
    from tests.support.celeba import make_celeba, write_official

    flat = io.BytesIO()
    Image.new("RGB", (178, 218), (120, 110, 100)).save(flat, format="JPEG")
    tiny = replace(make_celeba(10), jpegs=[flat.getvalue()] * 10)  # flat grey: no face to find
    write_official(tmp_path / "src", tiny)
    params = make_params(
        {
            "data": {
                "dataset": "celeba",
                "celeba": {"source": str(tmp_path / "src"), "verify_md5": False},
                "crop": {"method": "detect", "detect": {"on_miss": on_miss}},
                "max_bad_fraction": 0.0,
                "split": {"val": 0.2, "test": 0.2},
                "limit": 10,
            }
        }
    )
    run_download(params, raw_root=tmp_path / "raw")
    if on_miss == "center":
        metrics = _prepare(params, tmp_path)
        assert metrics["detect_fallbacks"] == 10 and metrics["images"] == 10
    else:
        # Every image skipped for want of a face: not counted as broken (max_bad_fraction
        # is 0), but no data is left to split.
        with pytest.raises(UserError, match="split 'train' is empty"):
            _prepare(params, tmp_path)
