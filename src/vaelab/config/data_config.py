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

    method: Literal["random", "official"] = "random"
    val: float = Field(0.1, ge=0.0, lt=1.0)
    test: float = Field(0.1, ge=0.0, lt=1.0)

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

    top: int = Field(40, ge=0)
    bottom: int = Field(188, gt=0)
    left: int = Field(15, ge=0)
    right: int = Field(163, gt=0)

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

    # Side of the square as a multiple of the eye-centre to mouth-centre distance
    # (about 40 px in aligned CelebA, so 3.5 gives a ~140 px face crop).
    scale: float = Field(3.5, gt=0.0)


class DetectConfig(Section):
    """Face detection crop."""

    detector: Literal["lbp", "mtcnn"] = "lbp"
    on_miss: Literal["skip", "center"] = "center"
    # The detected box is widened by this factor (about its centre) before cropping.
    margin: float = Field(1.3, gt=0.0)
    scale_factor: float = Field(1.2, gt=1.0)
    min_face: int = Field(24, gt=0, description="smallest face side searched, in pixels")


class CropConfig(Section):
    method: Literal["center", "box", "landmarks", "detect", "none"] = "center"
    # Side of the centre square (method: center); null = the largest square that fits.
    size: int | None = Field(None, gt=0)
    box: BoxConfig = BoxConfig()
    landmarks: LandmarksConfig = LandmarksConfig()
    detect: DetectConfig = DetectConfig()


class LfwConfig(Section):
    # Keep the 100 non-face images as the out-of-distribution set (split "ood").
    nonfaces: bool = True


class CelebAConfig(Section):
    # gdrive | an http(s)/file URL base | a local folder or zip (official or Kaggle layout)
    source: str = "gdrive"
    verify_md5: bool = True


class MnistConfig(Section):
    source: str = MNIST_MIRROR
    verify_md5: bool = True


class Cifar10Config(Section):
    source: str = CIFAR10_URL_BASE
    verify_md5: bool = True


class DownloadConfig(Section):
    cache_dir: str = "data/downloads"
    retries: int = Field(5, ge=0)
    backoff: float = Field(1.0, ge=0.0, description="first retry delay in seconds; doubles")
    timeout: float = Field(60.0, gt=0.0)
    max_extract_bytes: int = Field(8 * 1024**3, gt=0)


class DataConfig(Section):
    dataset: DatasetName = "lfw"
    image_size: int = Field(32, ge=4, le=1024)
    channels: Literal[1, 3] = 1
    resample: Resample = "bicubic"
    limit: int | None = Field(None, gt=0)
    max_bad_fraction: float = Field(0.01, ge=0.0, le=1.0)
    workers: int | None = Field(None, gt=0, description="processes for prepare; null = all cores")
    split: SplitConfig = SplitConfig()
    crop: CropConfig = CropConfig()
    lfw: LfwConfig = LfwConfig()
    celeba: CelebAConfig = CelebAConfig()
    mnist: MnistConfig = MnistConfig()
    cifar10: Cifar10Config = Cifar10Config()
    download: DownloadConfig = DownloadConfig()

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
