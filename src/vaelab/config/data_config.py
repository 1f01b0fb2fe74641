"""The ``data:`` section of params.yaml: what to download and how to prepare it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from vaelab.config.section import Section

DatasetName = Literal["lfw", "celeba", "mnist", "cifar10"]
# The antialiased resampling filter of prepare: bicubic and bilinear run through torch's
# uint8 kernels (PIL's algorithm, vectorised), lanczos through PIL.
Resample = Literal["bicubic", "bilinear", "lanczos"]

# Native (height, width) of each data set's images, used to check crop geometry
# before any work is done.
NATIVE_SIZE: dict[str, tuple[int, int]] = {
    "lfw": (25, 25),
    "celeba": (218, 178),
    "mnist": (28, 28),
    "cifar10": (32, 32),
}

MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist"
CIFAR10_URL_BASE = "https://www.cs.toronto.edu/~kriz"


class SplitConfig(Section):
    """How images are assigned to train/val/test."""

    method: Literal["random", "official"] = Field(
        "random",
        description="random: a seeded draw; official: the data set's own partition (CelebA's "
        "list_eval_partition.txt, MNIST's and CIFAR-10's test sets, val drawn from training).",
    )
    val: float = Field(0.1, ge=0.0, lt=1.0, description="Fraction of images for validation.")
    test: float = Field(0.1, ge=0.0, lt=1.0, description="Fraction of images for the test split.")

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> SplitConfig:
        if self.val + self.test >= 1.0:
            raise ValueError(
                f"val + test must be below 1 so that a training split remains "
                f"(got {self.val} + {self.test} = {self.val + self.test:g})"
            )
        return self


class BoxConfig(Section):
    """An explicit crop box in pixels of the original image (bottom/right exclusive)."""

    top: int = Field(40, ge=0, description="First row of the box.")
    bottom: int = Field(188, gt=0, description="Row after the box's last (exclusive).")
    left: int = Field(15, ge=0, description="First column of the box.")
    right: int = Field(163, gt=0, description="Column after the box's last (exclusive).")

    @model_validator(mode="after")
    def _box_not_empty(self) -> BoxConfig:
        if self.bottom <= self.top or self.right <= self.left:
            raise ValueError(
                f"the box is empty: need top < bottom and left < right "
                f"(got top={self.top}, bottom={self.bottom}, left={self.left}, right={self.right})"
            )
        return self


class LandmarksConfig(Section):
    """Square crop around eyes and mouth from CelebA's aligned landmarks."""

    scale: float = Field(
        3.5,
        gt=0.0,
        description="Side of the square as a multiple of the eye-centre to mouth-centre "
        "distance (about 40 px in aligned CelebA, so 3.5 gives a ~140 px face crop).",
    )


class DetectConfig(Section):
    """Face detection crop."""

    detector: Literal["lbp", "mtcnn"] = Field(
        "lbp",
        description="lbp: scikit-image's LBP frontal-face cascade (offline); mtcnn: "
        "facenet-pytorch's MTCNN, when that package is installed.",
    )
    on_miss: Literal["skip", "center"] = Field(
        "center",
        description="When no face is found: skip the image, or fall back to the center crop.",
    )
    margin: float = Field(
        1.3,
        gt=0.0,
        description="The detected box is widened by this factor (about its centre) before "
        "cropping.",
    )
    scale_factor: float = Field(
        1.2, gt=1.0, description="The cascade's step between the face sizes it searches."
    )
    min_face: int = Field(24, gt=0, description="Smallest face side searched, in pixels.")


class CropConfig(Section):
    """How each image is cropped before it is resized."""

    method: Literal["center", "box", "landmarks", "detect", "none"] = Field(
        "center",
        description="center: a square at the centre; box: an explicit box; landmarks: a "
        "square around CelebA's eyes and mouth; detect: a face detector; none: the whole image.",
    )
    size: int | None = Field(
        None,
        gt=0,
        description="Side of the centre square (method: center); null = the largest square "
        "that fits (CelebA's usual: 148).",
    )
    box: BoxConfig = Field(BoxConfig(), description="The box of method: box.")
    landmarks: LandmarksConfig = Field(
        LandmarksConfig(), description="The square of method: landmarks."
    )
    detect: DetectConfig = Field(DetectConfig(), description="The detector of method: detect.")


class LfwConfig(Section):
    """scikit-image's bundled lfw faces (offline)."""

    nonfaces: bool = Field(
        True,
        description='Keep the 100 non-face images as the out-of-distribution set (split "ood").',
    )


_VERIFY_MD5 = "Check every downloaded file against the official md5 sums (false: a warning)."


class CelebAConfig(Section):
    """Where CelebA comes from."""

    source: str = Field(
        "gdrive",
        description="gdrive (the official Google Drive files) | an http(s)/file URL base | a "
        "local folder or zip (official or Kaggle layout).",
    )
    verify_md5: bool = Field(True, description=_VERIFY_MD5)


class MnistConfig(Section):
    """Where MNIST comes from."""

    source: str = Field(MNIST_MIRROR, description="URL base of the four official archives.")
    verify_md5: bool = Field(True, description=_VERIFY_MD5)


class Cifar10Config(Section):
    """Where CIFAR-10 (the binary version) comes from."""

    source: str = Field(CIFAR10_URL_BASE, description="URL base of the binary archive.")
    verify_md5: bool = Field(True, description=_VERIFY_MD5)


class DownloadConfig(Section):
    """How the download stage fetches and unpacks."""

    cache_dir: str = Field(
        "data/downloads",
        description="Downloads are kept here (not a DVC output), so reruns and resumed "
        "downloads do not start over.",
    )
    retries: int = Field(5, ge=0, description="Retries of a failed request.")
    backoff: float = Field(1.0, ge=0.0, description="First retry delay in seconds; doubles.")
    timeout: float = Field(60.0, gt=0.0, description="Seconds per HTTP request.")
    max_extract_bytes: int = Field(
        8 * 1024**3, gt=0, description="Refuse archives that unpack to more than this."
    )


class DataConfig(Section):
    """The ``data:`` section: which data set, and how prepare makes its arrays."""

    dataset: DatasetName = Field(
        "lfw", description="lfw ships inside scikit-image (no network); the others download."
    )
    image_size: int = Field(32, ge=4, le=1024, description="Side of the prepared square images.")
    channels: Literal[1, 3] = Field(1, description="1: grey; 3: RGB.")
    resample: Resample = Field(
        "bicubic",
        description="The antialiased resize filter: bicubic and bilinear run through torch's "
        "uint8 kernels (PIL's algorithm, vectorised), lanczos through PIL (slower).",
    )
    limit: int | None = Field(None, gt=0, description="Keep the first N images (quick runs).")
    max_bad_fraction: float = Field(
        0.01,
        ge=0.0,
        le=1.0,
        description="Fail prepare when a larger fraction of images is unreadable or too small "
        "for the crop.",
    )
    workers: int | None = Field(None, gt=0, description="Processes for prepare; null = all cores.")
    split: SplitConfig = Field(SplitConfig(), description="How images go to train/val/test.")
    crop: CropConfig = Field(CropConfig(), description="How each image is cropped.")
    lfw: LfwConfig = Field(LfwConfig(), description="lfw's settings.")
    celeba: CelebAConfig = Field(CelebAConfig(), description="CelebA's source.")
    mnist: MnistConfig = Field(MnistConfig(), description="MNIST's source.")
    cifar10: Cifar10Config = Field(Cifar10Config(), description="CIFAR-10's source.")
    download: DownloadConfig = Field(DownloadConfig(), description="Retries, cache and limits.")

    @model_validator(mode="after")
    def _choices_fit_the_dataset(self) -> DataConfig:
        height, width = NATIVE_SIZE[self.dataset]
        crop = self.crop
        if crop.method == "center" and crop.size is not None and crop.size > min(height, width):
            raise ValueError(
                f"crop.size {crop.size} is larger than {self.dataset} images "
                f"({height}x{width}); use crop.size <= {min(height, width)} or crop.method: none"
            )
        if crop.method == "box" and (crop.box.bottom > height or crop.box.right > width):
            raise ValueError(
                f"crop.box reaches past {self.dataset} images ({height}x{width}): "
                f"need bottom <= {height} and right <= {width}"
            )
        if crop.method == "landmarks" and self.dataset != "celeba":
            raise ValueError(
                f"crop.method: landmarks needs CelebA's landmarks file; {self.dataset} has none "
                f"(use center, box, detect or none)"
            )
        if self.split.method == "official" and self.dataset == "lfw":
            raise ValueError(
                "split.method: official needs a partition file; lfw has none (use random)"
            )
        return self
