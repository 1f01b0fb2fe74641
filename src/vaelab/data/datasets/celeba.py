"""CelebA: the six official files, from Google Drive, a URL base, or a local copy.

The raw layout written by :func:`download` is the official one::

    data/raw/celeba/img_align_celeba/000001.jpg ...
    data/raw/celeba/list_attr_celeba.txt            (and the other annotation files)

A local copy may be in the official layout (the zip or the extracted folder beside the
``.txt`` files) or in the Kaggle mirror's (``img_align_celeba/img_align_celeba/`` and
``.csv`` files with a header row); Kaggle CSVs are rewritten in the official text
format so that everything after ``download`` sees one layout.
"""

from __future__ import annotations

import logging
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from vaelab.config.data_config import DataConfig
from vaelab.data.archive import extract_zip
from vaelab.data.datasets.catalog import Catalog, DownloadReport
from vaelab.data.fetch import DownloadError, check_md5
from vaelab.data.sources import is_url, obtain
from vaelab.errors import UserError
from vaelab.io.hashing import md5sum

log = logging.getLogger("vaelab.celeba")

IMAGE_DIR = "img_align_celeba"
IMAGE_ZIP = "img_align_celeba.zip"
ATTR_FILE = "list_attr_celeba.txt"
IDENTITY_FILE = "identity_CelebA.txt"
BBOX_FILE = "list_bbox_celeba.txt"
LANDMARKS_FILE = "list_landmarks_align_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"


@dataclass(frozen=True)
class OfficialFile:
    """One of the six official files: its name, Google Drive id and md5."""

    name: str
    drive_id: str
    md5: str
    required: bool


# From torchvision's datasets/celeba.py and the files themselves.
FILES: tuple[OfficialFile, ...] = (
    OfficialFile(
        IMAGE_ZIP, "0B7EVK8r0v71pZjFTYXZWM3FlRnM", "00d2c5bc6d35e252742224ab0c1e8fcb", True
    ),
    OfficialFile(
        ATTR_FILE, "0B7EVK8r0v71pblRyaVFSWGxPY0U", "75e246fa4810816ffd6ee81facbd244c", False
    ),
    OfficialFile(
        IDENTITY_FILE,
        "1_ee_0u7vcNLOfNLegJRHmolfH5ICW-XS",
        "32bd1bd63d3c78cd57e08160ec5ed1e2",
        False,
    ),
    OfficialFile(
        BBOX_FILE, "0B7EVK8r0v71pbThiMVRxWXZ4dU0", "00566efa6fedff7a56946cd1c10f1c16", False
    ),
    OfficialFile(
        LANDMARKS_FILE, "0B7EVK8r0v71pd0FJY3Blby1HUTQ", "cc24ecafdb5b50baae59b03474781f8c", False
    ),
    OfficialFile(
        PARTITION_FILE, "0B7EVK8r0v71pY0NSMzRuSXJEVkk", "d32c9cbf5e040fd4025c592c306e6668", False
    ),
)
ANNOTATION_FILES = tuple(f for f in FILES if f.name != IMAGE_ZIP)
# Brings one official file into the download cache and returns its path there.
Fetcher = Callable[[OfficialFile], Path]

# The Kaggle mirror ships the annotation files as CSVs with a header row.
KAGGLE_CSV = {
    "list_attr_celeba.csv": ATTR_FILE,
    "list_bbox_celeba.csv": BBOX_FILE,
    "list_landmarks_align_celeba.csv": LANDMARKS_FILE,
    "list_eval_partition.csv": PARTITION_FILE,
}
KAGGLE_IMAGE_PREFIX = "img_align_celeba/img_align_celeba/"
KAGGLE_NOTE = (
    "Kaggle layout: CSV annotations rewritten in the official text format; no official md5 applies"
)
PARTITION_NAMES = {0: "train", 1: "val", 2: "test"}

HOW_TO_SUPPLY = (
    "Ways to supply CelebA (set data.celeba.source in params.yaml):\n"
    "  - gdrive: the official Google Drive files (needs network access to Google Drive)\n"
    "  - an http(s):// or file:// URL base holding img_align_celeba.zip and the .txt files\n"
    "  - a local folder with img_align_celeba.zip (or the extracted img_align_celeba/) "
    "and the .txt files\n"
    "  - a local zip or folder in the Kaggle layout "
    "(img_align_celeba/img_align_celeba/ and .csv files)"
)


# --------------------------------------------------------------------------- download


def download(cfg: DataConfig, dest: Path, cache: Path) -> DownloadReport:
    """Write CelebA's official layout into ``dest`` from ``data.celeba.source``."""
    source = cfg.celeba.source.strip()
    if source == "gdrive":
        return _from_remote(cfg, dest, cache, source, _gdrive_fetcher(cfg, cache))
    if is_url(source):
        return _from_remote(cfg, dest, cache, source, _url_fetcher(cfg, cache, source))
    path = Path(source).expanduser()
    if path.is_dir():
        return _from_folder(cfg, dest, path)
    if path.is_file() and zipfile.is_zipfile(path):
        return _from_zip(cfg, dest, path)
    if path.exists():
        raise UserError(
            f"data.celeba.source: {source} is neither a folder nor a zip archive.\n{HOW_TO_SUPPLY}"
        )
    raise UserError(f"data.celeba.source: {source} does not exist.\n{HOW_TO_SUPPLY}")


def _gdrive_fetcher(cfg: DataConfig, cache: Path) -> Fetcher:
    import gdown
    import requests
    from gdown.exceptions import DownloadError as GdownError

    def fetch(file: OfficialFile) -> Path:
        dest = cache / file.name
        if dest.is_file() and (not cfg.celeba.verify_md5 or md5sum(dest) == file.md5):
            return dest
        cache.mkdir(parents=True, exist_ok=True)
        part = cache / (file.name + ".part")
        log.info("downloading %s from Google Drive (id %s)", file.name, file.drive_id)
        try:
            # gdown handles Drive's virus-scan confirmation page and resumes the .part file.
            gdown.download(
                id=file.drive_id,
                output=str(part),
                quiet=False,
                resume=True,
                retries=cfg.download.retries,
                timeout=cfg.download.timeout,
            )
        except (GdownError, requests.RequestException, OSError) as err:
            raise DownloadError(
                f"{file.name}: Google Drive download failed ({type(err).__name__}: {err}).\n"
                f"{HOW_TO_SUPPLY}"
            ) from err
        _reject_html(part, file.name)
        try:
            check_md5(part, file.md5, verify=cfg.celeba.verify_md5, label=file.name)
        except UserError:
            part.unlink(missing_ok=True)
            raise
        part.replace(dest)
        return dest

    return fetch


def _url_fetcher(cfg: DataConfig, cache: Path, base: str) -> Fetcher:
    def fetch(file: OfficialFile) -> Path:
        path = obtain(
            file.name,
            file.md5,
            source=base,
            cache=cache,
            verify=cfg.celeba.verify_md5,
            download=cfg.download,
            how_to_supply=HOW_TO_SUPPLY,
        )
        _reject_html(path, file.name)
        return path

    return fetch


def _from_remote(
    cfg: DataConfig, dest: Path, cache: Path, source: str, fetch: Fetcher
) -> DownloadReport:
    report = DownloadReport(source=source)
    # The required image zip first: without network this fails before any optional file.
    archive = fetch(FILES[0])
    for file in ANNOTATION_FILES:
        try:
            path = fetch(file)
        except DownloadError as err:
            # Optional files may be absent; the stage that needs one names it then.
            log.warning("optional %s not downloaded: %s", file.name, str(err).splitlines()[0])
            report.missing[file.name] = str(err).splitlines()[0]
            continue
        shutil.copyfile(path, dest / file.name)
    extract_zip(
        archive,
        dest / IMAGE_DIR,
        max_bytes=cfg.download.max_extract_bytes,
        select=_is_jpeg,
        strip=f"{IMAGE_DIR}/",
    )
    _check_images(dest)
    return report


def _from_folder(cfg: DataConfig, dest: Path, folder: Path) -> DownloadReport:
    report = DownloadReport(source=str(folder))
    kaggle_images = folder / IMAGE_DIR / IMAGE_DIR
    if kaggle_images.is_dir() or any((folder / name).is_file() for name in KAGGLE_CSV):
        return _from_kaggle_folder(dest, folder, report)
    for file in ANNOTATION_FILES:
        path = folder / file.name
        if not path.is_file():
            report.missing[file.name] = f"not in {folder}"
            continue
        _reject_html(path, file.name)
        check_md5(path, file.md5, verify=cfg.celeba.verify_md5, label=str(path))
        shutil.copyfile(path, dest / file.name)
    archive = folder / IMAGE_ZIP
    if archive.is_file():
        check_md5(archive, FILES[0].md5, verify=cfg.celeba.verify_md5, label=str(archive))
        extract_zip(
            archive,
            dest / IMAGE_DIR,
            max_bytes=cfg.download.max_extract_bytes,
            select=_is_jpeg,
            strip=f"{IMAGE_DIR}/",
        )
    elif (folder / IMAGE_DIR).is_dir():
        report.notes.append(
            f"images copied from the extracted folder {folder / IMAGE_DIR} (no zip to check)"
        )
        _copy_images(folder / IMAGE_DIR, dest / IMAGE_DIR)
    else:
        raise UserError(
            f"data.celeba.source: {folder} has neither {IMAGE_ZIP} nor {IMAGE_DIR}/.\n"
            f"{HOW_TO_SUPPLY}"
        )
    _check_images(dest)
    return report


def _from_kaggle_folder(dest: Path, folder: Path, report: DownloadReport) -> DownloadReport:
    report.notes.append(KAGGLE_NOTE)
    for csv_name, official in KAGGLE_CSV.items():
        path = folder / csv_name
        if path.is_file():
            _write_official_from_csv(path.read_bytes(), csv_name, dest / official)
        else:
            report.missing[official] = f"{csv_name} not in {folder}"
    report.missing[IDENTITY_FILE] = "the Kaggle mirror does not ship identities"
    images = folder / IMAGE_DIR / IMAGE_DIR
    if not images.is_dir():
        raise UserError(
            f"data.celeba.source: {folder} has no {IMAGE_DIR}/{IMAGE_DIR}/ image folder.\n"
            f"{HOW_TO_SUPPLY}"
        )
    _copy_images(images, dest / IMAGE_DIR)
    _check_images(dest)
    return report


def _from_zip(cfg: DataConfig, dest: Path, archive: Path) -> DownloadReport:
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
    name_set = set(names)
    if any(n.startswith(KAGGLE_IMAGE_PREFIX) for n in names):
        report = DownloadReport(source=str(archive))
        report.notes.append(KAGGLE_NOTE)
        with zipfile.ZipFile(archive) as zf:
            for csv_name, official in KAGGLE_CSV.items():
                member = _find_member(name_set, csv_name)
                if member is None:
                    report.missing[official] = f"{csv_name} not in {archive.name}"
                    continue
                _write_official_from_csv(zf.read(member), csv_name, dest / official)
        report.missing[IDENTITY_FILE] = "the Kaggle mirror does not ship identities"
        prefix = KAGGLE_IMAGE_PREFIX
    elif any(n.startswith(f"{IMAGE_DIR}/") for n in names):
        # The official image zip itself, or a zip of the official folder.
        report = DownloadReport(source=str(archive))
        if archive.name == IMAGE_ZIP:
            check_md5(archive, FILES[0].md5, verify=cfg.celeba.verify_md5, label=str(archive))
        with zipfile.ZipFile(archive) as zf:
            for file in ANNOTATION_FILES:
                member = _find_member(name_set, file.name)
                if member is None:
                    report.missing[file.name] = f"not in {archive.name}"
                    continue
                target = dest / file.name
                target.write_bytes(zf.read(member))
                _reject_html(target, file.name)
                check_md5(
                    target, file.md5, verify=cfg.celeba.verify_md5, label=f"{archive.name}:{member}"
                )
        prefix = f"{IMAGE_DIR}/"
    else:
        raise UserError(
            f"data.celeba.source: {archive} holds no {IMAGE_DIR}/ folder; it is not a CelebA "
            f"archive.\n{HOW_TO_SUPPLY}"
        )
    extract_zip(
        archive,
        dest / IMAGE_DIR,
        max_bytes=cfg.download.max_extract_bytes,
        select=lambda name: name.startswith(prefix) and _is_jpeg(name),
        strip=prefix,
    )
    _check_images(dest)
    return report


def _find_member(names: set[str], file_name: str) -> str | None:
    """The archive member called ``file_name`` at the top or one folder down."""
    for name in sorted(names, key=len):
        if name == file_name or (name.endswith("/" + file_name) and name.count("/") <= 1):
            return name
    return None


def _is_jpeg(name: str) -> bool:
    return name.lower().endswith((".jpg", ".jpeg"))


def _copy_images(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.iterdir()):
        if path.is_file() and _is_jpeg(path.name):
            shutil.copyfile(path, target / path.name)


def _check_images(dest: Path) -> None:
    images = dest / IMAGE_DIR
    if not images.is_dir() or not any(images.iterdir()):
        raise UserError(f"CelebA source gave no JPEG images under {IMAGE_DIR}/.\n{HOW_TO_SUPPLY}")


def _reject_html(path: Path, name: str) -> None:
    """Google Drive quota and error pages are often saved under the file's name."""
    with open(path, "rb") as handle:
        head = handle.read(512).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        path_text = str(path)
        path.unlink(missing_ok=True)
        raise UserError(
            f"{name}: the download is an HTML page, not the data file (Google Drive quota or "
            f"error page); it was deleted ({path_text}). Try again later or use another "
            f"source.\n{HOW_TO_SUPPLY}"
        )


def _write_official_from_csv(data: bytes, csv_name: str, target: Path) -> None:
    """Rewrite a Kaggle CSV in the official CelebA text format (CRLF, count line, header)."""
    try:
        table = pd.read_csv(pd.io.common.BytesIO(data), dtype=str)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise UserError(f"{csv_name}: not a readable CSV ({err})") from err
    if table.columns[0] != "image_id":
        raise UserError(
            f"{csv_name}: expected an 'image_id' first column, got {table.columns[0]!r}"
        )
    lines: list[str] = []
    if target.name == PARTITION_FILE:
        lines = [f"{row[0]} {row[1]}" for row in table.itertuples(index=False)]
    elif target.name == ATTR_FILE:
        lines = [str(len(table)), " ".join(table.columns[1:]) + " "]
        lines += [
            row[0] + "".join(f" {int(v):>2}" for v in row[1:])
            for row in table.itertuples(index=False)
        ]
    else:
        # bbox and landmarks: left-aligned names, right-aligned integers (official widths vary;
        # the parser below splits on whitespace).
        lines = [str(len(table)), " ".join(table.columns[1:])]
        lines += [
            row[0] + "".join(f" {int(v):>4}" for v in row[1:])
            for row in table.itertuples(index=False)
        ]
    target.write_bytes(("\r\n".join(lines) + "\r\n").encode("ascii"))


# --------------------------------------------------------------------------- catalog


def catalog(raw: Path, cfg: DataConfig) -> Catalog:
    """Every JPEG under ``raw``, with the attributes, identities, partition and landmarks
    that the files and the settings call for."""
    images_dir = raw / IMAGE_DIR
    if not images_dir.is_dir():
        raise UserError(f"{images_dir}: missing; run `dvc repro download` first")
    names = sorted(p.name for p in images_dir.iterdir() if _is_jpeg(p.name))
    index = pd.DataFrame({"image_id": names})

    attrs = _read_optional(raw / ATTR_FILE, read_attributes)
    if attrs is not None:
        index = index.join(attrs, on="image_id")
        attr_cols = list(attrs.columns)
        # Images without an attribute row get 0; counted so nobody is surprised.
        index[attr_cols] = index[attr_cols].fillna(0).astype(np.int8)
    identity = _read_optional(raw / IDENTITY_FILE, lambda p: read_two_column(p, "identity"))
    if identity is not None:
        index = index.join(identity, on="image_id")
        index["identity"] = index["identity"].fillna(-1).astype(np.int64)

    if cfg.split.method == "official":
        partition = _require(raw / PARTITION_FILE, "data.split.method: official", read_partition)
        index = index.join(partition, on="image_id")
        if index["partition"].isna().any():
            missing = index.loc[index["partition"].isna(), "image_id"].head(3).tolist()
            raise UserError(
                f"{raw / PARTITION_FILE}: no partition for some images (e.g. {missing})"
            )

    landmarks = None
    if cfg.crop.method == "landmarks":
        table = _require(raw / LANDMARKS_FILE, "data.crop.method: landmarks", read_landmarks)
        aligned = table.reindex(index["image_id"])
        if aligned.isna().any(axis=None):
            missing = aligned.index[aligned.isna().any(axis=1)][:3].tolist()
            raise UserError(
                f"{raw / LANDMARKS_FILE}: no landmarks for some images (e.g. {missing})"
            )
        landmarks = aligned.to_numpy(dtype=np.float64)

    sources = [str(images_dir / name) for name in names]
    return Catalog(index=index, sources=sources, landmarks=landmarks)


def _read_optional(path: Path, reader: Callable[[Path], pd.DataFrame]) -> pd.DataFrame | None:
    return reader(path) if path.is_file() else None


def _require(path: Path, needed_by: str, reader: Callable[[Path], pd.DataFrame]) -> pd.DataFrame:
    if not path.is_file():
        raise UserError(
            f"{path.name} is missing from {path.parent}, and {needed_by} needs it. Supply a "
            f"source that has it (data.celeba.source), or choose another option."
        )
    return reader(path)


def _read_counted_table(path: Path, what: str, dtype: type) -> pd.DataFrame:
    """Official files with a count line and a header of column names (attributes, landmarks,
    boxes)."""
    with open(path, encoding="ascii", errors="replace") as handle:
        count, header = handle.readline().strip(), handle.readline()
    if not count.isdigit():
        raise UserError(f"{path}: not a CelebA {what} file (first line should be the image count)")
    names = [n for n in header.split() if n != "image_id"]
    try:
        table = pd.read_csv(
            path, sep=r"\s+", skiprows=2, header=None, names=["image_id", *names], index_col=0
        )
    except (pd.errors.ParserError, ValueError) as err:
        raise UserError(
            f"{path}: rows do not match the {len(names)} columns of its header ({err})"
        ) from err
    if len(table) != int(count):
        raise UserError(f"{path}: the first line says {count} images but {len(table)} rows follow")
    if table.isna().any(axis=None):
        row = int(np.flatnonzero(table.isna().any(axis=1).to_numpy())[0]) + 1
        raise UserError(f"{path}: data row {row} has fewer than {len(names) + 1} fields")
    return table.astype(dtype)


def read_attributes(path: Path) -> pd.DataFrame:
    """``list_attr_celeba.txt`` → DataFrame indexed by image_id, 40 int8 columns of 0/1."""
    table = _read_counted_table(path, "attribute", np.int8)
    if not np.isin(table.to_numpy(), (-1, 1)).all():
        raise UserError(f"{path}: attribute values must be -1 or 1")
    return (table > 0).astype(np.int8)


def read_landmarks(path: Path) -> pd.DataFrame:
    """``list_landmarks_align_celeba.txt`` → DataFrame of 10 coordinates per image."""
    return _read_counted_table(path, "landmarks", np.float64)


def read_two_column(path: Path, column: str) -> pd.DataFrame:
    """Header-less ``name value`` files (identities, partitions)."""
    try:
        table = pd.read_csv(path, sep=r"\s+", header=None, names=["image_id", column], index_col=0)
    except (pd.errors.ParserError, ValueError) as err:
        raise UserError(f"{path}: expected two columns, image name and {column} ({err})") from err
    if table[column].isna().any() or not pd.api.types.is_integer_dtype(table[column]):
        raise UserError(f"{path}: every row needs an integer {column}")
    return table.astype(np.int64)


def read_partition(path: Path) -> pd.DataFrame:
    """``list_eval_partition.txt`` → DataFrame indexed by image_id: train, val or test."""
    table = read_two_column(path, "partition")
    unknown = set(table["partition"].unique()) - set(PARTITION_NAMES)
    if unknown:
        raise UserError(f"{path}: partition values must be 0, 1 or 2, found {sorted(unknown)}")
    table["partition"] = table["partition"].map(PARTITION_NAMES)
    return table
