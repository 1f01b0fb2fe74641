"""Turn one raw image (a file or an array) into one prepared ``uint8`` array.

The single entry point is :func:`process_image`; :func:`crop_box` is the pure
geometry behind it and :func:`resize` the resampling. Everything here works on
one image so that :mod:`vaelab.data.pool` can fan it out over every core.

Geometry: the crop box is rounded to whole pixels of the image as decoded, then
cut out and resized on its own (pixels outside the crop never leak in). With a
reduced-scale JPEG decode that moves the crop by less than half a decoded pixel,
which is less than half an output pixel.

Speed: CelebA-sized JPEGs are decoded by libjpeg-turbo (simplejpeg) with DCT
scaling whenever the crop, at the reduced scale, still holds at least
``spec.size`` pixels per side; bicubic and bilinear resizing run through torch's
antialiased ``uint8`` kernels (PIL's algorithm with integer weights, vectorised;
batched, under a third of PIL's time for a 74 -> 64 crop here). bench/prepare.py
measures the whole path against the obvious ``open / convert / crop / resize`` PIL
pipeline with the same filter.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, get_args

import numpy as np
import simplejpeg
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from vaelab.config.data_config import CropConfig, Resample
from vaelab.errors import UserError

if TYPE_CHECKING:
    from skimage.feature import Cascade

Box = tuple[float, float, float, float]
"""(left, top, right, bottom) in pixels of the original image; right/bottom exclusive."""

PixelBox = tuple[int, int, int, int]
"""(left, top, right, bottom) in whole pixels of the decoded image; right/bottom exclusive."""

# libjpeg's DCT scaling as PIL exposes it through Image.draft: 1/1, 1/2, 1/4, 1/8.
_JPEG_REDUCTIONS = (8, 4, 2, 1)


@dataclass(frozen=True)
class ImageSpec:
    """What every prepared image looks like: ``size`` x ``size`` x ``channels``."""

    size: int
    channels: int
    crop: CropConfig
    resample: Resample = "bicubic"

    def __post_init__(self) -> None:
        if self.size <= 0:
            raise ValueError(f"ImageSpec.size must be positive, got {self.size}")
        if self.channels not in (1, 3):
            raise ValueError(f"ImageSpec.channels must be 1 or 3, got {self.channels}")
        if self.resample not in get_args(Resample):
            raise ValueError(
                f"ImageSpec.resample must be one of {get_args(Resample)}, got {self.resample!r}"
            )

    @property
    def mode(self) -> str:
        """The PIL mode of the output: ``"L"`` or ``"RGB"``."""
        return "L" if self.channels == 1 else "RGB"


@dataclass(frozen=True)
class ImageResult:
    """The outcome for one image: pixels, or the reason it was skipped."""

    pixels: np.ndarray | None  # (size, size, channels) uint8; load_crop: the crop
    skipped: str | None  # reason when pixels is None
    fell_back: bool = False  # detect found no face and used the centre crop


# --------------------------------------------------------------------------- geometry


def _fit_square(cx: float, cy: float, side: float, height: int, width: int) -> Box:
    """A square of ``side`` centred on (cx, cy), shifted to stay inside the image.

    A square larger than the image is first shrunk to the image's shorter side.
    """
    side = min(float(side), float(width), float(height))
    left = min(max(cx - side / 2.0, 0.0), width - side)
    top = min(max(cy - side / 2.0, 0.0), height - side)
    return (left, top, left + side, top + side)


class CropOutside(UserError):
    """The crop does not fit inside this image. Called directly, :func:`crop_box` raises
    it as a user error; :func:`process_image` skips the one image with it as the reason,
    so a single small file among thousands does not stop ``prepare`` (too many such skips
    still do, through ``data.max_bad_fraction``)."""


def _center_box(height: int, width: int, size: int | None) -> Box:
    side = min(height, width) if size is None else size
    if side > min(height, width):
        raise CropOutside(
            f"crop.size {side} is larger than the image ({height}x{width}); "
            f"use crop.size <= {min(height, width)}, or leave it null for the largest square"
        )
    left = (width - side) // 2
    top = (height - side) // 2
    return (float(left), float(top), float(left + side), float(top + side))


def crop_box(
    height: int,
    width: int,
    crop: CropConfig,
    landmarks: np.ndarray | None = None,
) -> Box:
    """The crop, as (left, top, right, bottom) in pixels of a ``height`` x ``width`` image.

    ``center``: a ``crop.size`` square (the largest square when null) at the
    centre, on whole pixels. ``box``: ``crop.box`` as given. ``landmarks``: a
    square centred half-way between the eye centre and the mouth centre, of side
    ``crop.landmarks.scale`` times their distance, shifted to stay inside the
    image and shrunk if larger; ``landmarks`` is CelebA's aligned vector
    (lefteye_x, lefteye_y, righteye_x, righteye_y, nose_x, nose_y, leftmouth_x,
    leftmouth_y, rightmouth_x, rightmouth_y). ``none``: the whole image.
    ``detect`` needs the pixels, so it is not handled here (see process_image).
    """
    method = crop.method
    if method == "center":
        return _center_box(height, width, crop.size)
    if method == "none":
        return (0.0, 0.0, float(width), float(height))
    if method == "box":
        b = crop.box
        if b.bottom > height or b.right > width:
            raise CropOutside(
                f"crop.box (top={b.top}, bottom={b.bottom}, left={b.left}, right={b.right}) "
                f"reaches past the image ({height}x{width}); need bottom <= {height} "
                f"and right <= {width}"
            )
        return (float(b.left), float(b.top), float(b.right), float(b.bottom))
    if method == "landmarks":
        if landmarks is None:
            raise ValueError("crop.method 'landmarks' needs the image's landmark vector")
        pts = np.asarray(landmarks, dtype=np.float64).reshape(-1)
        if pts.shape != (10,):
            raise ValueError(f"expected 10 landmark coordinates, got {pts.size}")
        eye_x, eye_y = (pts[0] + pts[2]) / 2.0, (pts[1] + pts[3]) / 2.0
        mouth_x, mouth_y = (pts[6] + pts[8]) / 2.0, (pts[7] + pts[9]) / 2.0
        side = crop.landmarks.scale * float(np.hypot(mouth_x - eye_x, mouth_y - eye_y))
        if not side > 0.0:
            raise ValueError(
                f"landmarks give an empty crop (eye and mouth centres coincide): {pts}"
            )
        return _fit_square((eye_x + mouth_x) / 2.0, (eye_y + mouth_y) / 2.0, side, height, width)
    raise ValueError(f"crop_box cannot handle crop.method {method!r}")


# --------------------------------------------------------------------------- detection

_cascade: Cascade | None = None
_mtcnn: dict[int, Any] = {}


def _lbp_cascade() -> Cascade:
    """scikit-image's LBP frontal-face cascade, loaded once per process on first use."""
    global _cascade
    if _cascade is None:
        from skimage.data import lbp_frontal_face_cascade_filename
        from skimage.feature import Cascade

        # scikit-image's function has no annotations.
        _cascade = Cascade(lbp_frontal_face_cascade_filename())  # type: ignore[no-untyped-call]
    return _cascade


def _detect_lbp(img: Image.Image, crop: CropConfig) -> tuple[float, float, float, float] | None:
    """The largest face as (left, top, width, height), or None."""
    det = crop.detect
    width, height = img.size
    if det.min_face > min(width, height):
        return None
    grey = np.asarray(img if img.mode == "L" else img.convert("L"))
    found = _lbp_cascade().detect_multi_scale(
        grey,
        scale_factor=det.scale_factor,
        step_ratio=1,
        min_size=(det.min_face, det.min_face),
        max_size=(height, width),
    )
    if not found:
        return None
    best = max(found, key=lambda d: d["width"] * d["height"])  # first of equals wins
    return (float(best["c"]), float(best["r"]), float(best["width"]), float(best["height"]))


def _detect_mtcnn(img: Image.Image, crop: CropConfig) -> tuple[float, float, float, float] | None:
    det = crop.detect
    model = _mtcnn.get(det.min_face)
    if model is None:
        try:
            from facenet_pytorch import MTCNN
        except ImportError:
            raise UserError(
                "crop.detect.detector: mtcnn needs facenet-pytorch, which is not installed; "
                "run `pip install facenet-pytorch`, or use crop.detect.detector: lbp"
            ) from None
        model = MTCNN(
            keep_all=True, device="cpu", min_face_size=det.min_face, factor=1.0 / det.scale_factor
        )
        _mtcnn[det.min_face] = model
    boxes, _probs = model.detect(img if img.mode == "RGB" else img.convert("RGB"))
    if boxes is None or len(boxes) == 0:
        return None
    x1, y1, x2, y2 = max(boxes.tolist(), key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    return (x1, y1, x2 - x1, y2 - y1)


def _detect_box(img: Image.Image, crop: CropConfig) -> tuple[Box | None, bool]:
    """(crop box, fell_back) for method detect; (None, False) means skip the image."""
    width, height = img.size
    detect = _detect_mtcnn if crop.detect.detector == "mtcnn" else _detect_lbp
    face = detect(img, crop)
    if face is None:
        if crop.detect.on_miss == "skip":
            return None, False
        return _center_box(height, width, crop.size), True
    left, top, w, h = face
    side = max(w, h) * crop.detect.margin
    return _fit_square(left + w / 2.0, top + h / 2.0, side, height, width), False


# --------------------------------------------------------------------------- pixels


def _jpeg_reduction(box: Box, size: int) -> int:
    """The largest DCT reduction at which the crop still holds ``size`` pixels per side."""
    side = min(box[2] - box[0], box[3] - box[1])
    for reduction in _JPEG_REDUCTIONS:
        if side / reduction >= size:
            return reduction
    return 1


def pixel_box(box: Box, scale: float, height: int, width: int) -> PixelBox:
    """``box`` (original pixels) on the grid of a ``height`` x ``width`` image decoded
    at ``scale``, rounded to whole pixels: each of origin and size to the nearest
    (halves up), so a square stays square; shifted back inside if rounding pushed it out.
    """

    def nearest(value: float) -> int:
        return math.floor(value * scale + 0.5)

    w = min(max(1, nearest(box[2] - box[0])), width)
    h = min(max(1, nearest(box[3] - box[1])), height)
    left = min(max(nearest(box[0]), 0), width - w)
    top = min(max(nearest(box[1]), 0), height - h)
    return (left, top, left + w, top + h)


def resize(pixels: np.ndarray, size: int, resample: Resample) -> np.ndarray:
    """Antialiased resize of an (H, W, C) ``uint8`` array to (size, size, C).

    bicubic (a = -0.5) and bilinear use torch's ``uint8`` kernels: PIL's filter
    and its rounding between the two passes, with integer weights. Where the CPU
    has AVX2 the kernel is hand-vectorised (bench/prepare.py); elsewhere it
    is plain C++ doing the same integer arithmetic (slower than PIL's), so the
    bytes do not depend on the machine. lanczos uses PIL. An array already of the
    output size comes back unchanged.
    """
    resized: np.ndarray = resize_batch([pixels], size, resample)[0]
    return resized


# Crops resized in one torch call at most: enough to amortise the call (a 74x74 -> 64x64
# crop costs ~15 us in a batch and ~50 us alone), small enough to stay in cache.
_BATCH_BYTES = 4 * 1024 * 1024


def resize_batch(crops: Sequence[np.ndarray], size: int, resample: Resample) -> np.ndarray:
    """:func:`resize` for many (H, W, C) crops at once: an (N, size, size, C) array.

    Crops of one shape are stacked and resized in one torch call; the bytes are the
    same as resizing each alone (every image is computed on its own).
    """
    channels = crops[0].shape[2] if crops else 1
    out = np.empty((len(crops), size, size, channels), dtype=np.uint8)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, crop in enumerate(crops):
        groups.setdefault(crop.shape, []).append(i)
    for shape, rows in groups.items():
        if shape[:2] == (size, size):
            out[rows] = [crops[i] for i in rows]
        elif resample == "lanczos":
            for i in rows:
                out[i] = _pil_lanczos(crops[i], size)
        else:
            step = max(1, _BATCH_BYTES // math.prod(shape))
            for first in range(0, len(rows), step):
                block = rows[first : first + step]
                stacked = torch.from_numpy(np.stack([crops[i] for i in block]))  # (B, H, W, C)
                resized = F.interpolate(
                    stacked.permute(0, 3, 1, 2), size=(size, size), mode=resample, antialias=True
                )
                out[block] = resized.permute(0, 2, 3, 1).numpy()
    return out


def _pil_lanczos(crop: np.ndarray, size: int) -> np.ndarray:
    image = Image.fromarray(np.ascontiguousarray(crop[:, :, 0] if crop.shape[2] == 1 else crop))
    out = np.asarray(image.resize((size, size), Image.Resampling.LANCZOS))
    return out[:, :, np.newaxis] if out.ndim == 2 else out


def _cut(pixels: np.ndarray, box: Box, scale: float = 1.0) -> np.ndarray:
    """The ``box`` (original pixels) of ``pixels`` (decoded at ``scale``), as a view."""
    left, top, right, bottom = pixel_box(box, scale, pixels.shape[0], pixels.shape[1])
    return pixels[top:bottom, left:right]


def _array_to_image(array: np.ndarray) -> Image.Image:
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise ValueError(f"expected an (H, W), (H, W, 1) or (H, W, 3) image, got shape {a.shape}")
    if a.dtype.kind == "f":
        if a.size and not (np.isfinite(a).all() and a.min() >= 0.0 and a.max() <= 1.0):
            raise ValueError("float images must hold finite values in [0, 1]")
        a = np.rint(a * 255.0).astype(np.uint8)
    elif a.dtype != np.uint8:
        raise ValueError(f"expected a uint8 or float image, got dtype {a.dtype}")
    return Image.fromarray(np.ascontiguousarray(a))


def _pixels(img: Image.Image, mode: str) -> np.ndarray:
    """The image in PIL ``mode`` as a writable (H, W, C) ``uint8`` array."""
    pixels = np.array(img if img.mode == mode else img.convert(mode))
    return pixels[:, :, np.newaxis] if pixels.ndim == 2 else pixels


def _crop_pil(img: Image.Image, spec: ImageSpec, landmarks: np.ndarray | None) -> ImageResult:
    crop = spec.crop
    width, height = img.size
    fell_back = False
    scale = 1.0
    if crop.method == "detect":
        if img.format == "JPEG" and crop.detect.detector == "lbp":
            img.draft(spec.mode, None)  # L: the decoder skips chroma
        img.load()
        box, fell_back = _detect_box(img, crop)
        if box is None:
            return ImageResult(None, "no face detected")
    else:
        box = crop_box(height, width, crop, landmarks)
        if img.format == "JPEG":
            reduction = _jpeg_reduction(box, spec.size)
            drafted = img.draft(spec.mode, (width // reduction, height // reduction))
            if drafted is not None:
                # The decoder scales by exactly 1/reduction (its size is rounded up),
                # so use the scale PIL reports rather than the ratio of the sizes.
                scale = drafted[1][2] / width
        img.load()  # decode everything now: a truncated file fails here, not later
    return ImageResult(_cut(_pixels(img, spec.mode), box, scale), None, fell_back)


_JPEG_MAGIC = b"\xff\xd8\xff"
# JPEG colour spaces that libjpeg-turbo converts to RGB / GRAY itself; others (CMYK,
# YCCK) take the PIL path.
_FAST_COLORSPACES = ("Gray", "YCbCr")


def _crop_jpeg_bytes(
    data: bytes, spec: ImageSpec, landmarks: np.ndarray | None
) -> ImageResult | None:
    """The fast path for JPEG files: libjpeg-turbo (simplejpeg) decodes straight to an
    array at the smallest DCT scale that keeps ``spec.size`` pixels across the crop,
    and the crop is cut out. None means: use the PIL path.
    """
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError as err:
        return ImageResult(None, f"broken JPEG: {err}")
    if colorspace not in _FAST_COLORSPACES:
        return None
    if height * width > (Image.MAX_IMAGE_PIXELS or float("inf")):
        return ImageResult(
            None,
            f"decompression bomb: {width}x{height} pixels exceed PIL's limit of "
            f"{Image.MAX_IMAGE_PIXELS}",
        )
    box = crop_box(height, width, spec.crop, landmarks)
    reduction = _jpeg_reduction(box, spec.size)
    try:
        pixels = simplejpeg.decode_jpeg(
            data,
            colorspace="GRAY" if spec.channels == 1 else "RGB",
            min_height=-(-height // reduction),
            min_width=-(-width // reduction),
            strict=True,  # libjpeg's "premature end of data" warning is an error here
        )
    except ValueError as err:
        kind = "truncated" if "premature" in str(err).lower() else "broken"
        return ImageResult(None, f"{kind} JPEG: {err}")
    # libjpeg scales by M/8 and rounds the size up; recover M from the decoded width.
    scale = round(8 * pixels.shape[1] / width) / 8
    return ImageResult(_cut(pixels, box, scale), None)


def process_image(
    source: str | os.PathLike[str] | np.ndarray,
    spec: ImageSpec,
    landmarks: np.ndarray | None = None,
) -> ImageResult:
    """Prepare one image: decode, crop per ``spec.crop``, resize to ``spec.size``.

    ``source`` is an image file or an array ((H, W), (H, W, 1) or (H, W, 3);
    uint8, or float in [0, 1] which becomes round(x * 255)). Files that cannot
    be used (empty, truncated, not an image, a decompression bomb, unreadable, smaller
    than the crop) give an ImageResult with ``skipped`` set; so does ``detect`` with
    ``on_miss: skip`` when no face is found. Bad configuration raises UserError.
    """
    result = load_crop(source, spec, landmarks)
    if result.pixels is None:
        return result
    return replace(result, pixels=resize(result.pixels, spec.size, spec.resample))


def load_crop(
    source: str | os.PathLike[str] | np.ndarray,
    spec: ImageSpec,
    landmarks: np.ndarray | None = None,
) -> ImageResult:
    """:func:`process_image` up to the resize: ``pixels`` is the crop, (h, w, channels)
    ``uint8`` on the decoded image's grid; :func:`resize_batch` finishes many at once.
    """
    try:
        return _load_crop(source, spec, landmarks)
    except CropOutside as err:
        return ImageResult(None, f"smaller than the crop: {err}")


def _load_crop(
    source: str | os.PathLike[str] | np.ndarray,
    spec: ImageSpec,
    landmarks: np.ndarray | None = None,
) -> ImageResult:
    if isinstance(source, np.ndarray):
        return _crop_pil(_array_to_image(source), spec, landmarks)

    try:
        # Opened apart from its `with` (below, which closes it) so that only open()'s own
        # OSError becomes a skip reason.
        fh = open(source, "rb")  # noqa: SIM115
    except OSError as err:
        return ImageResult(None, f"unreadable file: {err.strerror or err}")
    with fh:
        nbytes = os.fstat(fh.fileno()).st_size
        if nbytes == 0:
            return ImageResult(None, "empty file")
        if spec.crop.method != "detect" and fh.read(3) == _JPEG_MAGIC:
            fh.seek(0)
            fast = _crop_jpeg_bytes(fh.read(), spec, landmarks)
            if fast is not None:
                return fast
        fh.seek(0)
        fmt = "image"
        with warnings.catch_warnings():
            # PIL warns above Image.MAX_IMAGE_PIXELS and raises above twice that; refuse both.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                with Image.open(fh) as img:
                    fmt = img.format or fmt
                    return _crop_pil(img, spec, landmarks)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
                return ImageResult(None, f"decompression bomb: {err}")
            except UnidentifiedImageError:
                return ImageResult(None, f"not an image: {nbytes} bytes in no format PIL reads")
            except (OSError, SyntaxError) as err:
                # OSError: truncated or corrupt data; SyntaxError: how some PIL plugins
                # (PNG chunks, for one) report a malformed file while loading.
                kind = "truncated" if "truncated" in str(err) else "broken"
                return ImageResult(None, f"{kind} {fmt}: {err}")
