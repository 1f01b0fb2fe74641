"""A small CelebA written by the tests in the official file formats and the Kaggle layout.

Official formats (from the files themselves): CRLF line ends; ``list_attr_celeba.txt``
has the image count, then the 40 names separated by single spaces with a trailing space,
then rows ``000001.jpg -1  1  1 -1 ...`` (values right-aligned to width 2); identities
and partitions have no header.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ATTRIBUTES = [
    "5_o_Clock_Shadow",
    "Arched_Eyebrows",
    "Attractive",
    "Bags_Under_Eyes",
    "Bald",
    "Bangs",
    "Big_Lips",
    "Big_Nose",
    "Black_Hair",
    "Blond_Hair",
    "Blurry",
    "Brown_Hair",
    "Bushy_Eyebrows",
    "Chubby",
    "Double_Chin",
    "Eyeglasses",
    "Goatee",
    "Gray_Hair",
    "Heavy_Makeup",
    "High_Cheekbones",
    "Male",
    "Mouth_Slightly_Open",
    "Mustache",
    "Narrow_Eyes",
    "No_Beard",
    "Oval_Face",
    "Pale_Skin",
    "Pointy_Nose",
    "Receding_Hairline",
    "Rosy_Cheeks",
    "Sideburns",
    "Smiling",
    "Straight_Hair",
    "Wavy_Hair",
    "Wearing_Earrings",
    "Wearing_Hat",
    "Wearing_Lipstick",
    "Wearing_Necklace",
    "Wearing_Necktie",
    "Young",
]
LANDMARK_NAMES = [
    "lefteye_x",
    "lefteye_y",
    "righteye_x",
    "righteye_y",
    "nose_x",
    "nose_y",
    "leftmouth_x",
    "leftmouth_y",
    "rightmouth_x",
    "rightmouth_y",
]
BBOX_NAMES = ["x_1", "y_1", "width", "height"]
WIDTH, HEIGHT = 178, 218
FIXED_TIME = (2015, 1, 1, 0, 0, 0)


@dataclass
class TinyCelebA:
    names: list[str]
    attributes: np.ndarray  # (n, 40) of -1/1
    identities: np.ndarray  # (n,)
    partitions: np.ndarray  # (n,) of 0/1/2
    landmarks: np.ndarray  # (n, 10)
    bboxes: np.ndarray  # (n, 4)
    jpegs: list[bytes]


def make_celeba(n: int = 12, seed: int = 0) -> TinyCelebA:
    rng = np.random.default_rng(seed)
    names = [f"{i:06d}.jpg" for i in range(1, n + 1)]
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    jpegs = []
    for _ in range(n):
        # A smooth "face-like" blob on a gradient, so crops and resizes have structure.
        cy, cx = 120 + rng.integers(-5, 6), 89 + rng.integers(-5, 6)
        blob = np.exp(-(((yy - cy) / 45.0) ** 2 + ((xx - cx) / 35.0) ** 2))
        base = np.stack([blob * 200 + 30, blob * 150 + xx / 4, blob * 120 + yy / 4], axis=-1)
        noise = rng.normal(0, 6, size=base.shape)
        pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        jpegs.append(buffer.getvalue())
    partitions = np.array([0] * (n - 4) + [1, 1, 2, 2])[:n]
    landmarks = np.tile([69, 111, 108, 111, 88, 135, 72, 152, 105, 152], (n, 1)) + rng.integers(
        -3, 4, (n, 10)
    )
    return TinyCelebA(
        names=names,
        attributes=rng.choice([-1, 1], size=(n, len(ATTRIBUTES))),
        identities=rng.integers(1, 5, size=n),
        partitions=partitions,
        landmarks=landmarks,
        bboxes=np.tile([95, 71, 226, 313], (n, 1)),
        jpegs=jpegs,
    )


def _crlf(lines: list[str]) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def official_texts(data: TinyCelebA) -> dict[str, bytes]:
    n = len(data.names)
    attr = [str(n), " ".join(ATTRIBUTES) + " "]
    attr += [
        name + "".join(f" {v:>2}" for v in row)
        for name, row in zip(data.names, data.attributes, strict=True)
    ]
    landmarks = [str(n), " ".join(LANDMARK_NAMES)]
    landmarks += [
        f"{name:<10}" + "".join(f" {v:>5}" for v in row)
        for name, row in zip(data.names, data.landmarks, strict=True)
    ]
    bbox = [str(n), " ".join(BBOX_NAMES)]
    bbox += [
        f"{name:<10}" + "".join(f" {v:>5}" for v in row)
        for name, row in zip(data.names, data.bboxes, strict=True)
    ]
    return {
        "list_attr_celeba.txt": _crlf(attr),
        "identity_CelebA.txt": _crlf(
            [f"{a} {b}" for a, b in zip(data.names, data.identities, strict=True)]
        ),
        "list_eval_partition.txt": _crlf(
            [f"{a} {b}" for a, b in zip(data.names, data.partitions, strict=True)]
        ),
        "list_landmarks_align_celeba.txt": _crlf(landmarks),
        "list_bbox_celeba.txt": _crlf(bbox),
    }


def image_zip_bytes(data: TinyCelebA, corrupt: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    # Fixed timestamps: the same data must give the same bytes (and md5) every time.
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(zipfile.ZipInfo("img_align_celeba/", FIXED_TIME), b"")
        for name, jpeg in zip(data.names, data.jpegs, strict=True):
            zf.writestr(
                zipfile.ZipInfo(f"img_align_celeba/{name}", FIXED_TIME),
                (corrupt or {}).get(name, jpeg),
            )
    return buffer.getvalue()


def write_official(
    folder: Path, data: TinyCelebA, *, skip: tuple[str, ...] = (), corrupt=None
) -> dict[str, str]:
    """The six official files in ``folder``; returns name → md5 (to stand in for the real sums)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"img_align_celeba.zip": image_zip_bytes(data, corrupt), **official_texts(data)}
    sums = {}
    for name, payload in files.items():
        sums[name] = hashlib.md5(payload).hexdigest()
        if name not in skip:
            (folder / name).write_bytes(payload)
    return sums


def write_kaggle(folder: Path, data: TinyCelebA) -> None:
    """The Kaggle mirror's layout: nested image folder and CSVs with a header row."""
    images = folder / "img_align_celeba" / "img_align_celeba"
    images.mkdir(parents=True, exist_ok=True)
    for name, jpeg in zip(data.names, data.jpegs, strict=True):
        (images / name).write_bytes(jpeg)

    def csv(header: list[str], rows) -> str:
        return (
            "\n".join([",".join(header)] + [",".join(str(v) for v in row) for row in rows]) + "\n"
        )

    (folder / "list_attr_celeba.csv").write_text(
        csv(
            ["image_id", *ATTRIBUTES],
            ([n, *r] for n, r in zip(data.names, data.attributes, strict=True)),
        )
    )
    (folder / "list_eval_partition.csv").write_text(
        csv(["image_id", "partition"], zip(data.names, data.partitions, strict=True))
    )
    (folder / "list_landmarks_align_celeba.csv").write_text(
        csv(
            ["image_id", *LANDMARK_NAMES],
            ([n, *r] for n, r in zip(data.names, data.landmarks, strict=True)),
        )
    )
    (folder / "list_bbox_celeba.csv").write_text(
        csv(
            ["image_id", *BBOX_NAMES],
            ([n, *r] for n, r in zip(data.names, data.bboxes, strict=True)),
        )
    )


def zip_tree(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, path.relative_to(folder).as_posix())
    return archive
