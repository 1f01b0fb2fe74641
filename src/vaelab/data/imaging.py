"""Turn one raw image (a file or an array) into one prepared ``uint8`` array.

The single entry point is :func:`process_image`; :func:`crop_box` is the pure
geometry behind it. Everything here works on one image so that
:mod:`vaelab.data.pool` can fan it out over every core.

Speed: CelebA-sized JPEGs are decoded with libjpeg's DCT scaling (PIL's
``Image.draft``) whenever the crop, at the reduced scale, still holds at least
``spec.size`` pixels per side, and the crop and the antialiased resize happen in
one ``Image.resize(..., box=...)`` call; colour JPEGs are decoded to YCbCr and
converted after the resize. On 178x218 CelebA-like JPEGs cropped to 148 and
resized to 64 that takes a third to a half off the obvious ``open / convert /
crop / resize`` pipeline with the same LANCZOS filter (bench/prepare.py).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

from vaelab.config.data import CropConfig
from vaelab.errors import UserError

if TYPE_CHECKING:
    from skimage.feature import Cascade

Box = tuple[float, float, float, float]
"""(left, top, right, bottom) in pixels of the original image; right/bottom exclusive."""

# libjpeg's DCT scaling as PIL exposes it through Image.draft: 1/1, 1/2, 1/4, 1/8.
_JPEG_REDUCTIONS = (8, 4, 2, 1)

_RESAMPLE = Image.Resampling.LANCZOS


@dataclass(frozen=True)
class ImageSpec:
    """What every prepared image looks like: ``size`` x ``size`` x ``channels``."""

    size: int
    channels: int
    crop: CropConfig

    def __post_init__(self) -> None:
        if self.size <= 0:
            raise ValueError(f"ImageSpec.size must be positive, got {self.size}")
        if self.channels not in (1, 3):
            raise ValueError(f"ImageSpec.channels must be 1 or 3, got {self.channels}")

    @property
    def mode(self) -> str:
        """The PIL mode of the output: ``"L"`` or ``"RGB"``."""
        return "L" if self.channels == 1 else "RGB"


@dataclass(frozen=True)
class ImageResult:
    """The outcome for one image: pixels, or the reason it was skipped."""

    pixels: np.ndarray | None  # (size, size, channels) uint8
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


def _center_box(height: int, width: int, size: int | None) -> Box:
    side = min(height, width) if size is None else size
    if side > min(height, width):
        raise UserError(
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
            raise UserError(
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
            raise ValueError(f"landmarks give an empty crop (eye and mouth centres coincide): {pts}")
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

        _cascade = Cascade(lbp_frontal_face_cascade_filename())
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
    if crop.detect.detector == "mtcnn":
        face = _detect_mtcnn(img, crop)
    else:
        face = _detect_lbp(img, crop)
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


def _finish(img: Image.Image, spec: ImageSpec, box: Box) -> np.ndarray:
    """Convert to the spec's mode, crop ``box`` and resize, in as few passes as possible."""
    mode = spec.mode
    # Colour conversions from L and YCbCr are per-pixel affine maps, so they commute
    # with the (linear) resize; doing them on the small output is cheaper.
    convert_after = mode == "RGB" and img.mode in ("L", "YCbCr")
    if img.mode != mode and not convert_after:
        img = img.convert(mode)
    out = img.resize((spec.size, spec.size), _RESAMPLE, box=box)
    if convert_after:
        out = out.convert(mode)
    pixels = np.asarray(out)
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    return pixels


def _draft_mode(spec: ImageSpec) -> str:
    # Greyscale: the decoder hands over its Y plane and skips chroma altogether.
    # Colour: take YCbCr and convert after the resize, on the small output; at a
    # reduced DCT scale libjpeg's own YCbCr->RGB step costs 15-25% of the decode.
    return "L" if spec.channels == 1 else "YCbCr"


def _process_pil(img: Image.Image, spec: ImageSpec, landmarks: np.ndarray | None) -> ImageResult:
    crop = spec.crop
    width, height = img.size
    fell_back = False
    if crop.method == "detect":
        if img.format == "JPEG" and crop.detect.detector == "lbp":
            img.draft(_draft_mode(spec), None)
        img.load()
        box, fell_back = _detect_box(img, crop)
        if box is None:
            return ImageResult(None, "no face detected")
    else:
        box = crop_box(height, width, crop, landmarks)
        if img.format == "JPEG":
            reduction = _jpeg_reduction(box, spec.size)
            drafted = img.draft(_draft_mode(spec), (width // reduction, height // reduction))
            if drafted is not None:
                # The decoder scales by exactly 1/reduction (its size is rounded up),
                # so use the scale PIL reports rather than the ratio of the sizes.
                scale = drafted[1][2] / width
                if scale != 1.0:
                    box = (box[0] * scale, box[1] * scale, box[2] * scale, box[3] * scale)
        img.load()  # decode everything now: a truncated file fails here, not later
    return ImageResult(_finish(img, spec, box), None, fell_back)


_JPEG_MAGIC = b"\xff\xd8\xff"
# JPEG colour spaces that libjpeg-turbo converts to RGB / GRAY itself; others (CMYK,
# YCCK) take the PIL path.
_FAST_COLORSPACES = ("Gray", "YCbCr")


def _process_jpeg_bytes(data: bytes, spec: ImageSpec, landmarks: np.ndarray | None) -> ImageResult | None:
    """The fast path for JPEG files: libjpeg-turbo (simplejpeg) decodes straight to an
    array at the smallest DCT scale that keeps ``spec.size`` pixels across the crop,
    then one antialiased PIL resize crops and scales. None means: use the PIL path.
    """
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError as err:
        return ImageResult(None, f"broken JPEG: {err}")
    if colorspace not in _FAST_COLORSPACES:
        return None
    if height * width > (Image.MAX_IMAGE_PIXELS or float("inf")):
        return ImageResult(
            None, f"decompression bomb: {width}x{height} pixels exceed PIL's limit of {Image.MAX_IMAGE_PIXELS}"
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
    if scale != 1.0:
        box = (box[0] * scale, box[1] * scale, box[2] * scale, box[3] * scale)
    img = Image.fromarray(pixels[:, :, 0] if spec.channels == 1 else pixels)
    out = np.asarray(img.resize((spec.size, spec.size), _RESAMPLE, box=box))
    return ImageResult(out[:, :, np.newaxis] if out.ndim == 2 else out, None)


def process_image(
    source: str | os.PathLike[str] | np.ndarray,
    spec: ImageSpec,
    landmarks: np.ndarray | None = None,
) -> ImageResult:
    """Prepare one image: decode, crop per ``spec.crop``, resize to ``spec.size``.

    ``source`` is an image file or an array ((H, W), (H, W, 1) or (H, W, 3);
    uint8, or float in [0, 1] which becomes round(x * 255)). Files that cannot
    be used (empty, truncated, not an image, a decompression bomb, unreadable)
    give an ImageResult with ``skipped`` set; so does ``detect`` with
    ``on_miss: skip`` when no face is found. Bad configuration raises UserError.
    """
    if isinstance(source, np.ndarray):
        return _process_pil(_array_to_image(source), spec, landmarks)

    try:
        fh = open(source, "rb")  # closed by the `with fh` below
    except OSError as err:
        return ImageResult(None, f"unreadable file: {err.strerror or err}")
    with fh:
        nbytes = os.fstat(fh.fileno()).st_size
        if nbytes == 0:
            return ImageResult(None, "empty file")
        if spec.crop.method != "detect" and fh.read(3) == _JPEG_MAGIC:
            fh.seek(0)
            fast = _process_jpeg_bytes(fh.read(), spec, landmarks)
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
                    return _process_pil(img, spec, landmarks)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
                return ImageResult(None, f"decompression bomb: {err}")
            except UnidentifiedImageError:
                return ImageResult(None, f"not an image: {nbytes} bytes in no format PIL reads")
            except (OSError, SyntaxError) as err:
                # OSError: truncated or corrupt data; SyntaxError: how some PIL plugins
                # (PNG chunks, for one) report a malformed file while loading.
                kind = "truncated" if "truncated" in str(err) else "broken"
                return ImageResult(None, f"{kind} {fmt}: {err}")
