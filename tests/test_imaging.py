"""Image preparation: crop geometry, decoding (fast and refused paths), detection, the pool."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin
from skimage import data as skdata

from vaelab.config.data_config import CropConfig
from vaelab.data import imaging, pool
from vaelab.data.imaging import (
    ImageResult,
    ImageSpec,
    crop_box,
    pixel_box,
    process_image,
    resize,
    resize_batch,
)
from vaelab.data.pool import process_all
from vaelab.errors import UserError

H, W = 218, 178  # CelebA's aligned images


def face_like(height: int = H, width: int = W, seed: int = 0) -> np.ndarray:
    """A smooth picture with some texture, so crops, draft decoding and resizes have structure."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack(
        [
            120 + 80 * np.sin(xx / 17.0) * np.cos(yy / 23.0),
            100 + 60 * np.cos(xx / 11.0 + yy / 29.0),
            90
            + 70
            * np.exp(
                -(((yy - height / 2) / (height / 4)) ** 2 + ((xx - width / 2) / (width / 4)) ** 2)
            ),
        ],
        axis=-1,
    )
    return (base + rng.normal(0, 4, base.shape)).clip(0, 255).astype(np.uint8)


def write_jpeg(path: Path, array: np.ndarray | None = None, quality: int = 90) -> Path:
    Image.fromarray(face_like() if array is None else array).save(path, "JPEG", quality=quality)
    return path


@pytest.fixture
def jpeg(tmp_path: Path) -> Path:
    return write_jpeg(tmp_path / "000001.jpg")


def center(size: int | None = None) -> CropConfig:
    return CropConfig(method="center", size=size)


# --------------------------------------------------------------------------- crop_box


def test_crop_box_center_celeba_148() -> None:
    # rows 35:183, cols 15:163
    assert crop_box(H, W, center(148)) == (15.0, 35.0, 163.0, 183.0)


def test_crop_box_center_largest_square_when_size_is_null() -> None:
    assert crop_box(H, W, center(None)) == (0.0, 20.0, 178.0, 198.0)
    assert crop_box(25, 25, center(None)) == (0.0, 0.0, 25.0, 25.0)


def test_crop_box_center_larger_than_the_image_is_a_user_error() -> None:
    with pytest.raises(UserError, match=r"crop\.size 200"):
        crop_box(H, W, center(200))


def test_crop_box_box_is_taken_as_given() -> None:
    # rows 40:188, cols 15:163 (the defaults)
    assert crop_box(H, W, CropConfig(method="box")) == (15.0, 40.0, 163.0, 188.0)
    box = {"top": 1, "bottom": 11, "left": 2, "right": 7}
    assert crop_box(H, W, CropConfig(method="box", box=box)) == (2.0, 1.0, 7.0, 11.0)


def test_crop_box_box_past_the_image_is_a_user_error() -> None:
    with pytest.raises(UserError, match="reaches past"):
        crop_box(100, 100, CropConfig(method="box"))


def landmark_vector(eye_y: float = 110.0, mouth_y: float = 150.0) -> np.ndarray:
    # eyes (70, eye_y) and (110, eye_y); nose; mouth corners (75, mouth_y) and (105, mouth_y)
    return np.array(
        [70, eye_y, 110, eye_y, 90, (eye_y + mouth_y) / 2, 75, mouth_y, 105, mouth_y], float
    )


def test_crop_box_landmarks_square_between_eyes_and_mouth() -> None:
    # eye centre (90, 110), mouth centre (90, 150): distance 40, side 3.5 * 40 = 140,
    # centre (90, 130)
    crop = CropConfig(method="landmarks")
    assert crop_box(H, W, crop, landmark_vector()) == pytest.approx((20.0, 60.0, 160.0, 200.0))


def test_crop_box_landmarks_shifted_inside_and_clipped() -> None:
    # Near the top edge: centre y 40, side 140 would start at -30; shifted down to 0.
    crop = CropConfig(method="landmarks")
    assert crop_box(H, W, crop, landmark_vector(20, 60)) == pytest.approx((20.0, 0.0, 160.0, 140.0))
    # Side 10 * 40 = 400 is larger than the image: clipped to 178, kept inside.
    big = CropConfig(method="landmarks", landmarks={"scale": 10.0})
    assert crop_box(H, W, big, landmark_vector()) == pytest.approx((0.0, 40.0, 178.0, 218.0))


def test_crop_box_landmarks_needs_the_vector() -> None:
    with pytest.raises(ValueError, match="landmark"):
        crop_box(H, W, CropConfig(method="landmarks"))


def test_crop_box_none_is_the_whole_image() -> None:
    assert crop_box(H, W, CropConfig(method="none")) == (0.0, 0.0, 178.0, 218.0)


# --------------------------------------------------------------------------- pixel_box


def test_pixel_box_rounds_a_half_scale_crop_to_whole_pixels() -> None:
    # CelebA's centre 148 crop at half scale is (7.5, 17.5, 81.5, 91.5): halves round up,
    # the size stays 74, the square stays square.
    assert pixel_box((15.0, 35.0, 163.0, 183.0), 0.5, 109, 89) == (8, 18, 82, 92)
    assert pixel_box((15.0, 35.0, 163.0, 183.0), 1.0, H, W) == (15, 35, 163, 183)
    # A fractional (landmarks) box at full scale: origin and size to the nearest pixel.
    assert pixel_box((20.4, 60.6, 160.2, 200.4), 1.0, H, W) == (20, 61, 160, 201)


def test_pixel_box_stays_inside_the_decoded_image() -> None:
    # 24 wide at scale 1/2 is 12 decoded pixels. The box (1, 0, 24, 23) becomes
    # (0.5, 0, 12, 11.5): origin 1 and size 12 would end at 13, so it is shifted back in.
    assert pixel_box((1.0, 0.0, 24.0, 23.0), 0.5, 12, 12) == (0, 0, 12, 12)
    assert pixel_box((11.0, 0.0, 25.0, 14.0), 0.5, 13, 13) == (6, 0, 13, 7)
    assert pixel_box((0.0, 0.0, 0.2, 0.2), 1.0, 10, 10) == (0, 0, 1, 1)  # never empty


# --------------------------------------------------------------------------- resize


def _pil_resize(pixels: np.ndarray, size: int, method: Image.Resampling) -> np.ndarray:
    return np.asarray(Image.fromarray(pixels).resize((size, size), method))


@pytest.mark.parametrize(
    ("resample", "pil"),
    [("bicubic", Image.Resampling.BICUBIC), ("bilinear", Image.Resampling.BILINEAR)],
)
@pytest.mark.parametrize("size", [20, 64, 300])  # down, down, up
def test_torch_resize_is_pils_filter(resample: str, pil: Image.Resampling, size: int) -> None:
    crop = face_like()[35:183, 15:163]
    ours = resize(np.ascontiguousarray(crop), size, resample)  # type: ignore[arg-type]
    theirs = _pil_resize(np.ascontiguousarray(crop), size, pil)
    assert ours.shape == theirs.shape == (size, size, 3) and ours.dtype == np.uint8
    # The same filter and the same rounding between the passes, but torch's integer
    # weights are coarser than PIL's: under 1% of the values move, by a level or two.
    diff = np.abs(ours.astype(np.int16) - theirs.astype(np.int16))
    assert diff.max() <= 2 and (diff > 0).mean() < 0.01


def test_lanczos_is_pils_lanczos_and_grey_works() -> None:
    crop = face_like(60, 50)
    np.testing.assert_array_equal(
        resize(crop, 32, "lanczos"), _pil_resize(crop, 32, Image.Resampling.LANCZOS)
    )
    grey = crop[:, :, :1]
    for resample in ("bicubic", "bilinear", "lanczos"):
        out = resize(grey, 16, resample)  # type: ignore[arg-type]
        assert out.shape == (16, 16, 1) and out.dtype == np.uint8


@pytest.mark.parametrize("resample", ["bicubic", "bilinear", "lanczos"])
def test_pixels_outside_the_crop_never_leak_in(resample: str) -> None:
    # A flat grey square in a white frame: the filters reach past the crop's edge,
    # but only into the crop's own pixels.
    image = np.full((100, 100, 3), 255, np.uint8)
    image[20:80, 20:80] = 100
    spec = ImageSpec(
        16,
        3,
        CropConfig(method="box", box={"top": 20, "bottom": 80, "left": 20, "right": 80}),
        resample,
    )  # type: ignore[arg-type]
    out = process_image(image, spec).pixels
    assert out is not None and (out == 100).all()


def test_same_size_passes_through() -> None:
    crop = face_like(32, 32)
    for resample in ("bicubic", "bilinear", "lanczos"):
        np.testing.assert_array_equal(resize(crop, 32, resample), crop)  # type: ignore[arg-type]


@pytest.mark.parametrize("resample", ["bicubic", "bilinear", "lanczos"])
def test_resize_batch_is_resize_of_each(resample: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Mixed shapes (one already at the output size), views of larger arrays, and a
    # batch limit small enough that one shape is split over several torch calls.
    monkeypatch.setattr(imaging, "_BATCH_BYTES", 2 * 40 * 30 * 3)
    crops = [face_like(60, 50, seed=i)[5:45, 10:40] for i in range(5)]
    crops += [
        face_like(24, 24, seed=9),
        face_like(37, 37, seed=8),
        face_like(60, 50, seed=7)[5:45, 10:40],
    ]
    out = resize_batch(crops, 24, resample)  # type: ignore[arg-type]
    assert out.shape == (8, 24, 24, 3) and out.dtype == np.uint8
    for crop, row in zip(crops, out, strict=True):
        np.testing.assert_array_equal(row, resize(crop, 24, resample))  # type: ignore[arg-type]
    np.testing.assert_array_equal(out[5], crops[5])
    assert resize_batch([], 24, resample).shape == (0, 24, 24, 1)  # type: ignore[arg-type]


def test_resized_bytes_do_not_depend_on_the_cpus_vector_units(tmp_path: Path) -> None:
    # torch has a hand-vectorised uint8 kernel for AVX2 and a plain C++ one for the rest
    # (ATEN_CPU_CAPABILITY picks: default, avx2, or unset = the best this CPU has). All
    # must give the same bytes, or images.npy (and every md5 in dvc.lock after it) would
    # differ between machines.
    np.save(tmp_path / "crop.npy", face_like(91, 77))
    script = (
        "import sys, numpy as np; from vaelab.data.imaging import resize; "
        "crop = np.load(sys.argv[1]); "
        "sys.stdout.buffer.write(b''.join(resize(crop, s, m).tobytes() "
        "for s in (16, 40, 120) for m in ('bicubic', 'bilinear')))"
    )
    outputs = []
    for capability in ("default", "avx2", None):
        env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
        if capability:
            env["ATEN_CPU_CAPABILITY"] = capability
        done = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / "crop.npy")],
            env=env,
            capture_output=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr.decode()
        outputs.append(done.stdout)
    assert len(outputs[0]) == 3 * (16 * 16 + 40 * 40 + 120 * 120) * 2
    assert outputs[0] == outputs[1] == outputs[2]


# --------------------------------------------------------------------------- files


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [32, 64])
def test_process_image_shape_and_dtype(jpeg: Path, channels: int, size: int) -> None:
    result = process_image(jpeg, ImageSpec(size, channels, center(148)))
    assert result.skipped is None and not result.fell_back
    assert result.pixels is not None
    assert result.pixels.shape == (size, size, channels)
    assert result.pixels.dtype == np.uint8


def _spy_decodes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """Record the shape of every array the fast JPEG path decodes."""
    shapes: list[tuple[int, ...]] = []
    real = imaging.simplejpeg.decode_jpeg

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        pixels = real(*args, **kwargs)
        shapes.append(pixels.shape)
        return pixels

    monkeypatch.setattr(imaging.simplejpeg, "decode_jpeg", spy)
    return shapes


@pytest.mark.parametrize("channels", [1, 3])
def test_reduced_decode_is_close_to_the_full_decode(
    jpeg: Path, channels: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded = _spy_decodes(monkeypatch)
    spec = ImageSpec(64, channels, center(148))
    fast = process_image(jpeg, spec).pixels
    # 148 / 2 = 74 >= 64 pixels per side, 148 / 4 = 37 is not: decode at half scale.
    assert decoded == [(H // 2, W // 2, channels)]

    # The same pixels decoded in full, as an array (no reduction), cropped where the
    # half-scale crop landed: (15, 35, 163, 183) / 2 rounds to (8, 18, 82, 92).
    with Image.open(jpeg) as img:
        full_image = img.convert("L" if channels == 1 else "RGB")
    landed = CropConfig(method="box", box={"left": 16, "top": 36, "right": 164, "bottom": 184})
    full = process_image(np.asarray(full_image), ImageSpec(64, channels, landed)).pixels
    assert fast is not None and full is not None
    diff = np.abs(fast.astype(np.int16) - full.astype(np.int16))
    assert diff.mean() < 2.0
    assert diff.max() < 40


def test_no_reduction_when_the_crop_is_too_small_to_reduce(
    jpeg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded = _spy_decodes(monkeypatch)
    assert process_image(jpeg, ImageSpec(100, 3, center(148))).pixels is not None
    assert decoded == [(H, W, 3)]  # 148 / 2 = 74 < 100: full scale


@pytest.mark.parametrize("channels", [1, 3])
def test_cmyk_jpeg_takes_the_pil_draft_path(
    tmp_path: Path, channels: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (W, H), (10, 200, 30, 5)).save(path, quality=90)
    requested: list[tuple[str, tuple[int, int] | None]] = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):  # type: ignore[no-untyped-def]
        requested.append((mode, size))
        return real_draft(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    result = process_image(path, ImageSpec(64, channels, center(148)))
    assert result.pixels is not None and result.pixels.shape == (64, 64, channels)
    assert requested and requested[0][1] == (W // 2, H // 2)


def test_truncated_jpeg_is_skipped(tmp_path: Path, jpeg: Path) -> None:
    data = jpeg.read_bytes()
    for cut in (len(data) // 2, len(data) - 2):  # half the data; only the end marker gone
        path = tmp_path / f"cut{cut}.jpg"
        path.write_bytes(data[:cut])
        result = process_image(path, ImageSpec(64, 3, center(148)))
        assert result.pixels is None
        assert result.skipped is not None and result.skipped.startswith("truncated JPEG")


def test_empty_file_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert process_image(path, ImageSpec(32, 1, center())) == ImageResult(None, "empty file")


def test_text_file_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture\n")
    result = process_image(path, ImageSpec(32, 1, center()))
    assert result.pixels is None
    assert result.skipped is not None and result.skipped.startswith("not an image")


def test_missing_file_is_skipped(tmp_path: Path) -> None:
    result = process_image(tmp_path / "gone.jpg", ImageSpec(32, 1, center()))
    assert result.pixels is None and result.skipped is not None
    assert result.skipped.startswith("unreadable file")


@pytest.mark.parametrize("limit", [10_000, 30_000])  # 178 x 218 = 38,804 pixels
def test_decompression_bomb_is_skipped(
    jpeg: Path, limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Above 2x the limit PIL raises DecompressionBombError; between 1x and 2x it only
    # warns, which must be refused too.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    result = process_image(jpeg, ImageSpec(32, 3, center()))
    assert result.pixels is None
    assert result.skipped is not None and result.skipped.startswith("decompression bomb")


@pytest.mark.parametrize(
    ("kind", "crop", "reason"),
    [
        ("a folder named like an image", center(), "unreadable file: Is a directory"),
        ("a PNG signature and noise", center(), "not an image"),
        (
            "an image smaller than the centre crop",
            center(148),
            "smaller than the crop: crop.size 148 is larger",
        ),
        (
            "an image the crop box reaches past",
            CropConfig(method="box", box={"top": 0, "bottom": 100, "left": 0, "right": 100}),
            "smaller than the crop: crop.box (top=0, bottom=100",
        ),
    ],
    ids=["folder", "png-noise", "small-center", "small-box"],
)
def test_more_bad_files_are_skipped_with_a_reason(
    tmp_path: Path, kind: str, crop: CropConfig, reason: str
) -> None:
    path = tmp_path / "bad.png"
    if kind.startswith("a folder"):
        path.mkdir()
    elif kind.startswith("a PNG"):
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + np.random.default_rng(0).bytes(200))
    else:
        Image.fromarray(face_like(40, 30)).save(path)
    for source in (path, tmp_path / "bad.jpg"):  # PIL's path and the JPEG fast path
        if source.suffix == ".jpg":
            if not path.is_file() or kind.startswith("a PNG"):
                continue
            Image.open(path).convert("RGB").save(source, quality=95)
        result = process_image(source, ImageSpec(32, 3, crop))
        assert (
            result.pixels is None
            and result.skipped is not None
            and result.skipped.startswith(reason)
        ), kind


def test_png_and_palette_images_are_converted(tmp_path: Path) -> None:
    path = tmp_path / "p.png"
    Image.fromarray(face_like(40, 30)).convert("P").save(path)
    result = process_image(path, ImageSpec(16, 3, CropConfig(method="none")))
    assert result.pixels is not None and result.pixels.shape == (16, 16, 3)


# --------------------------------------------------------------------------- arrays


def test_float_array_becomes_rounded_uint8() -> None:
    # lfw: float64 in [0, 1], 25 x 25
    rng = np.random.default_rng(1)
    lfw = rng.random((25, 25))
    lfw[0, 0], lfw[0, 1] = 0.0, 1.0
    result = process_image(lfw, ImageSpec(25, 1, CropConfig(method="none")))
    assert result.pixels is not None
    np.testing.assert_array_equal(result.pixels[:, :, 0], np.round(lfw * 255).astype(np.uint8))
    bigger = process_image(lfw, ImageSpec(32, 1, center())).pixels
    assert bigger is not None and bigger.shape == (32, 32, 1)


def test_float_array_outside_unit_range_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        process_image(np.full((8, 8), 2.0), ImageSpec(8, 1, center()))


def test_uint8_arrays_pass_through_unchanged() -> None:
    rng = np.random.default_rng(2)
    mnist = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    out = process_image(mnist, ImageSpec(28, 1, CropConfig(method="none"))).pixels
    assert out is not None
    np.testing.assert_array_equal(out[:, :, 0], mnist)

    cifar = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = process_image(cifar, ImageSpec(32, 3, CropConfig(method="none"))).pixels
    assert out is not None
    np.testing.assert_array_equal(out, cifar)
    grey = process_image(cifar, ImageSpec(16, 1, center(24))).pixels
    assert grey is not None and grey.shape == (16, 16, 1)
    # Greyscale in, colour out: the one band is repeated.
    rgb = process_image(mnist, ImageSpec(14, 3, center())).pixels
    assert rgb is not None and rgb.shape == (14, 14, 3)
    assert (rgb[:, :, 0] == rgb[:, :, 1]).all() and (rgb[:, :, 1] == rgb[:, :, 2]).all()


# --------------------------------------------------------------------------- detect


def detect(on_miss: str = "skip", size: int | None = None) -> CropConfig:
    return CropConfig(method="detect", size=size, detect={"on_miss": on_miss})


def test_detect_finds_the_astronauts_face() -> None:
    astronaut = skdata.astronaut()  # 512 x 512, face near rows 75-160, cols 175-265
    box, fell_back = imaging._detect_box(Image.fromarray(astronaut), detect())
    assert box is not None and not fell_back
    left, top, right, bottom = box
    assert right - left == pytest.approx(bottom - top)
    assert 150 < left < 200 and 40 < top < 90 and 240 < right < 300 and 130 < bottom < 190

    result = process_image(astronaut, ImageSpec(32, 3, detect()))
    assert result.skipped is None and not result.fell_back
    assert result.pixels is not None and result.pixels.shape == (32, 32, 3)


def test_detect_without_a_face_skips_or_falls_back() -> None:
    blank = np.full((120, 100, 3), 128, dtype=np.uint8)
    skipped = process_image(blank, ImageSpec(16, 1, detect("skip")))
    assert skipped == ImageResult(None, "no face detected")

    fallback = process_image(blank, ImageSpec(16, 1, detect("center")))
    assert fallback.fell_back and fallback.skipped is None
    assert fallback.pixels is not None and fallback.pixels.shape == (16, 16, 1)
    box, fell_back = imaging._detect_box(Image.fromarray(blank), detect("center", size=80))
    assert fell_back and box == (10.0, 20.0, 90.0, 100.0)


def test_detect_on_a_jpeg_file(jpeg: Path) -> None:
    result = process_image(jpeg, ImageSpec(24, 3, detect("center")))
    assert result.pixels is not None and result.pixels.shape == (24, 24, 3)


def test_mtcnn_without_facenet_pytorch_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)  # import fails
    monkeypatch.setattr(imaging, "_mtcnn", {})
    crop = CropConfig(method="detect", detect={"detector": "mtcnn"})
    with pytest.raises(UserError, match="pip install facenet-pytorch"):
        process_image(np.zeros((40, 40, 3), np.uint8), ImageSpec(16, 3, crop))


def test_the_cascade_is_loaded_lazily_and_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imaging, "_cascade", None)
    first = imaging._lbp_cascade()
    assert imaging._lbp_cascade() is first


# --------------------------------------------------------------------------- pool


def pool_tasks(tmp_path: Path, n: int = 23) -> list[tuple[object, None]]:
    tasks: list[tuple[object, None]] = []
    for i in range(n):
        tasks.append((write_jpeg(tmp_path / f"{i:06d}.jpg", face_like(seed=i)), None))
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")
    cut = (tmp_path / "000000.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(cut[: len(cut) // 2])
    tasks.insert(3, (tmp_path / "empty.jpg", None))
    tasks.insert(10, (str(tmp_path / "text.jpg"), None))
    tasks.append((tmp_path / "cut.jpg", None))
    tasks.append((face_like(50, 40, seed=99), None))  # an array among the files
    return tasks


@pytest.mark.parametrize("fork_shared_memory", [True, False])
def test_process_all_is_identical_for_any_worker_count(
    tmp_path: Path, fork_shared_memory: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # False: workers send the pixels back instead of writing shared memory (the
    # path used where fork is unavailable).
    monkeypatch.setattr(pool, "_use_fork", lambda: fork_shared_memory)
    tasks = pool_tasks(tmp_path)
    spec = ImageSpec(32, 3, center(40))
    one = process_all(tasks, spec, workers=1, progress=False)
    two = process_all(tasks, spec, workers=2, progress=False)
    three = process_all(tasks, spec, workers=3, progress=False)

    assert sorted(one.skipped) == [3, 10, 25]
    assert one.skipped[3] == "empty file"
    assert one.skipped[10].startswith("not an image")
    assert one.skipped[25].startswith("truncated JPEG")
    for other in (two, three):
        assert other.skipped == one.skipped
        np.testing.assert_array_equal(other.kept, one.kept)
        assert other.pixels.shape == one.pixels.shape == (len(tasks) - 3, 32, 32, 3)
        assert other.pixels.dtype == np.uint8
        assert other.pixels.tobytes() == one.pixels.tobytes()

    # In task order: kept row k is the k-th kept task.
    expected = [process_image(src, spec, lm).pixels for src, lm in tasks]
    np.testing.assert_array_equal(one.pixels, np.stack([e for e in expected if e is not None]))
    assert one.kept.tolist() == [e is not None for e in expected]


def test_process_all_counts_fallbacks_and_handles_empty_input() -> None:
    spec = ImageSpec(16, 1, detect("center"))
    blank = np.full((60, 60), 200, np.uint8)
    result = process_all([(blank, None), (blank, None)], spec, workers=2, progress=False)
    assert result.fell_back == 2 and result.pixels.shape == (2, 16, 16, 1)

    empty = process_all([], spec, progress=False)
    assert empty.pixels.shape == (0, 16, 16, 1) and empty.kept.shape == (0,)


def test_process_all_passes_landmarks(tmp_path: Path) -> None:
    path = write_jpeg(tmp_path / "a.jpg")
    spec = ImageSpec(16, 3, CropConfig(method="landmarks"))
    marks = landmark_vector()
    result = process_all([(path, marks), (path, marks)], spec, workers=2, progress=False)
    single = process_image(path, spec, marks).pixels
    assert single is not None
    np.testing.assert_array_equal(result.pixels[0], single)


def test_image_spec_is_validated() -> None:
    with pytest.raises(ValueError, match="channels"):
        ImageSpec(32, 2, center())
    with pytest.raises(ValueError, match="size"):
        ImageSpec(0, 1, center())
