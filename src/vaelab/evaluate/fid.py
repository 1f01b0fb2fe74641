"""FID and KID (issue 14): how far a variant's samples and its reconstructions lie from the
test split in Inception-v3's 2048 pool features.

The numbers are torchmetrics' ``FrechetInceptionDistance`` (Heusel et al. 2017) and
``KernelInceptionDistance`` (Bińkowski et al. 2018: the unbiased estimate of MMD² under the
kernel (x·y / d + 1)³, averaged over random subsets), on the features of torch-fidelity's
Inception-v3 as torchmetrics wraps it (``NoTrainInceptionV3``), with TensorFlow 1's
bilinear resize to 299 × 299 like the reference FID code. Images go in as that network
expects them: uint8 (rounded from [0, 1]) RGB, grey images repeated to three channels.

The weights are never downloaded. :func:`resolve` finds the file that
``evaluate.inception.weights`` names or, when it is null, the file in torch's hub cache,
and checks its SHA-256 prefix before anything is built; torch-fidelity is only handed a
file that is there (given no path, it would download one). Without the file, or without
torch-fidelity, the record says ``measured: false``, why, and where to put the file, and
the headline has no number for either. A file with another checksum is a UserError.

Every image set's features are extracted once: the test split's for all replicates, then
per replicate its samples (the ``evaluate.samples`` draws from N(0, I) the other
experiments measure) and its reconstructions of the test split, streamed a batch at a time.
Both metrics are then computed from those features by torchmetrics' own metric classes,
handed a feature "extractor" that passes the features through (:class:`GivenFeatures`).
"""

from __future__ import annotations

import logging
import pickle
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from vaelab.config.evaluate_config import InceptionConfig
from vaelab.errors import UserError
from vaelab.evaluate.aggregate import Replicate, combine
from vaelab.evaluate.context import Context
from vaelab.io.hashing import sha256sum
from vaelab.measures.headline import FID_RECORD
from vaelab.models import Autoencoder
from vaelab.models.inference import batches, model_device

log = logging.getLogger("vaelab.evaluate")

RECORD = FID_RECORD  # the detail's key for what this module measured, or why it did not
WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
SHA256_PREFIX = "6726825d"
# Where the weights are published: pytorch-fid's release under WEIGHTS_FILE, and
# torch-fidelity's (URL_INCEPTION_V3 in its feature_extractor_inceptionv3.py), whose own
# download keeps its name in the hub cache; both carry the SHA-256 prefix in the name.
DOWNLOADS = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
    "pt_inception-2015-12-05-6726825d.pth",
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth",
)
HUB_NAMES = (WEIGHTS_FILE, "weights-inception-2015-12-05-6726825d.pth")
FEATURES = 2048  # Inception-v3's pool features, the FID's
INCEPTION_BATCH = 50  # images per Inception forward (each one resized to 299 x 299)
MEASURED = ("sample", "recon")  # what is compared with the test split
BIAS = (
    "FID is biased upward on few images (the bias falls like 1/N; Chong and Forsyth 2020, "
    "'Effectively unbiased FID'): compare FIDs measured on equal image counts only. "
    "KID's estimator is unbiased."
)


@dataclass(frozen=True)
class NotMeasured:
    """Why FID and KID are not measured; ``put_file_at``: where the weights belong, when they
    are missing."""

    reason: str
    put_file_at: Path | None = None

    def record(self) -> dict[str, Any]:
        """The detail's RECORD: not measured, why, and where to put the file."""
        record: dict[str, Any] = {"measured": False, "reason": self.reason}
        if self.put_file_at is not None:
            record["put the file at"] = shown(self.put_file_at)
        return record


def shown(path: Path) -> str:
    """``path`` as a person types it: under the home folder as ``~/...``, so that the default hub
    cache reads the same in every user's detail file (which is kept in git); else as it is."""
    home = Path.home()
    return (
        f"~/{path.relative_to(home).as_posix()}"
        if path.is_absolute() and path.is_relative_to(home)
        else str(path)
    )


@dataclass(frozen=True)
class Weights:
    """The weights file, found and checked."""

    path: Path
    sha256: str


def hub_checkpoints() -> Path:
    """torch's cache of downloaded weights, ``torch.hub.get_dir()/checkpoints`` ($TORCH_HOME/hub,
    else $XDG_CACHE_HOME/torch/hub, else ~/.cache/torch/hub)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def candidates(settings: InceptionConfig) -> tuple[Path, ...]:
    """Where the weights file may be, in the order looked at: the configured file, else the hub
    cache's WEIGHTS_FILE and torch-fidelity's name for it."""
    if settings.weights is not None:
        return (Path(settings.weights),)
    return tuple(hub_checkpoints() / name for name in HUB_NAMES)


def resolve(settings: InceptionConfig) -> Weights | NotMeasured:
    """The checked weights file, or why FID and KID are not measured (every missing piece, in
    one reason).

    Reads files and imports torch-fidelity; never opens a connection. A file that is there
    with a SHA-256 not starting with SHA256_PREFIX, or that holds more than tensors, is a
    UserError (a wrong file is a mistake to fix, not a metric to skip).
    """
    if not settings.enabled:
        return NotMeasured("evaluate.inception.enabled is false")
    places = candidates(settings)
    found = next((path for path in places if path.is_file()), None)
    # A wrong file stops here, torch-fidelity or not.
    weights = None if found is None else checked(found)
    problems = [] if weights is not None else [_missing(places)]
    if (backend := backend_problem()) is not None:
        problems.append(backend)
    if weights is None or problems:
        return NotMeasured("; ".join(problems), places[0] if weights is None else None)
    return weights


def _missing(places: tuple[Path, ...]) -> str:
    where = shown(places[0])
    others = "".join(f" or {shown(path)}" for path in places[1:])
    kind = " (a folder: name the file itself)" if places[0].is_dir() else ""
    return (
        f"no Inception weights file at {where}{kind}{others}, and they are never downloaded "
        f"here: get {WEIGHTS_FILE} (SHA-256 {SHA256_PREFIX}...) from {DOWNLOADS[0]} and put it "
        f"at {where}"
    )


def checked(path: Path) -> Weights:
    """``path`` as Weights when its SHA-256 starts with SHA256_PREFIX and it loads as tensors
    only."""
    digest = sha256sum(path)
    if not digest.startswith(SHA256_PREFIX):
        raise UserError(
            f"{path}: SHA-256 {digest[:16]}... does not start with {SHA256_PREFIX}, so it is not "
            f"the Inception weights FID and KID are defined with ({WEIGHTS_FILE}, from "
            f"{DOWNLOADS[0]}); replace the file, or set evaluate.inception.enabled: false"
        )
    # torch-fidelity loads the file with weights_only=False (any pickle), after a check of 32
    # bits: refuse first a file that holds more than tensors, as saved models are loaded here.
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UserError(
            f"{path}: not a plain state dict of tensors, so it is not loaded ({err})"
        ) from None
    return Weights(path, digest)


def backend_problem() -> str | None:
    """Why torch-fidelity's Inception-v3 cannot be built in this environment; None when it can."""
    try:
        import torch_fidelity  # noqa: F401
    except ModuleNotFoundError as err:
        if err.name != "torch_fidelity":
            return f"torch-fidelity cannot be imported: {err}"
        return (
            "torch-fidelity (the Inception-v3 of the FID) is not installed: "
            "pip install -c constraints.txt -e '.[fid]' (README: FID and KID)"
        )
    # A torchvision built for another torch fails with RuntimeError.
    except (ImportError, RuntimeError) as err:
        return (
            f"torch-fidelity cannot be imported ({type(err).__name__}: {err}): the torchvision it "
            f"imports must be the build made for this torch {torch.__version__} "
            "(README: FID and KID)"
        )
    return None


def inception(weights: Weights, device: torch.device) -> nn.Module:
    """Inception-v3 with ``weights`` on ``device``: uint8 ``(B, 3, H, W)`` → ``(B, 2048)`` pool
    features."""
    from torchmetrics.image.fid import NoTrainInceptionV3

    # antialias=False: TensorFlow 1's resize (torch-fidelity's), that of the reference FID.
    network: nn.Module = NoTrainInceptionV3(
        name="inception-v3-compat",
        features_list=[str(FEATURES)],
        feature_extractor_weights_path=str(weights.path),
        antialias=False,
    )
    return network.to(device)


class GivenFeatures(nn.Module):
    """torchmetrics' metrics run a feature extractor on what they are given: this one is
    handed features extracted already and passes them through."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.num_features = dim  # read by FrechetInceptionDistance instead of a trial forward

    def forward(self, features: Tensor) -> Tensor:
        """The features, unchanged."""
        return features


def kid_subset_size(settings: InceptionConfig, real: int, fake: int) -> int:
    """The KID subset size used: ``kid_subset_size``, at most the smaller set's count."""
    return min(settings.kid_subset_size, real, fake)


def distances(
    real: Tensor, fake: Tensor, settings: InceptionConfig, *, seed: int
) -> dict[str, float]:
    """``fid``, ``kid`` and ``kid_subsets_sd`` (KID's sd over its subsets) of ``fake`` ``(M, D)``
    features against ``real`` ``(N, D)``, in float64 through torchmetrics; KID's subsets are
    drawn from torch's global generator seeded with ``seed`` (and restored afterwards)."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    real, fake = real.double(), fake.double()
    given = GivenFeatures(real.shape[1])
    frechet = FrechetInceptionDistance(feature=given)
    with warnings.catch_warnings():  # that it keeps the features: they are kept already
        warnings.filterwarnings("ignore", message="Metric `Kernel Inception Distance` will save")
        kernel = KernelInceptionDistance(
            feature=given,
            subsets=settings.kid_subsets,
            subset_size=kid_subset_size(settings, len(real), len(fake)),
        )
    for metric in (frechet, kernel):
        metric.update(real, real=True)
        metric.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        kid, kid_sd = kernel.compute()
    return {"fid": float(frechet.compute()), "kid": float(kid), "kid_subsets_sd": float(kid_sd)}


def as_inception_input(images: Tensor) -> Tensor:
    """``(B, C, H, W)`` in [0, 1] (C = 1 or 3) → ``(B, 3, H, W)`` uint8: the nearest of the 256
    levels (a uint8 image divided by 255 comes back exactly), grey repeated to RGB, contiguous:
    test images arrive channels-last, decoded ones not, and a conv's float sums depend on the
    layout."""
    pixels = images.float().clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    return (pixels.expand(-1, 3, -1, -1) if pixels.shape[1] == 1 else pixels).contiguous()


@torch.no_grad()
def extract(
    extractor: nn.Module,
    images: Iterable[Tensor],
    *,
    device: torch.device,
    count: int,
    what: str,
    progress: bool = False,
) -> Tensor:
    """``extractor``'s features of every batch of ``images`` (``(B, C, H, W)`` in [0, 1]), in
    pieces of INCEPTION_BATCH on ``device``: ``(count, D)`` float32 on the CPU."""
    parts = []
    with tqdm(total=count, desc=f"inception: {what}", unit="image", disable=not progress) as bar:
        for batch in images:
            for piece in torch.split(as_inception_input(batch), INCEPTION_BATCH):
                parts.append(extractor(piece.to(device)).float().cpu())
                bar.update(len(piece))
    features = torch.cat(parts)
    if len(features) != count:
        raise ValueError(f"{what}: {len(features)} feature rows for {count} images")
    return features


@torch.no_grad()
def reconstructions(model: Autoencoder, test: np.ndarray, batch_size: int) -> Iterator[Tensor]:
    """The model's reconstructions of ``test`` (eval mode: decoded from μ or the code), a batch
    at a time."""
    for x in batches(test, batch_size, model_device(model)):
        yield model(x)["recon"]


@dataclass(frozen=True)
class SampleQuality:
    """What run_evaluate writes: the detail's RECORD, ``{RECORD: the sd over seeds of its
    numbers}`` for the detail's ``sd``, and each replicate's own numbers by seed (both empty
    when nothing was measured)."""

    record: dict[str, Any]
    sd: dict[str, Any] = field(default_factory=dict)
    seeds: dict[int, dict[str, Any]] = field(default_factory=dict)


def sample_quality(
    found: Weights | NotMeasured, contexts: list[Context], *, progress: bool = False
) -> SampleQuality:
    """The detail's RECORD for the replicates in ``contexts``: :func:`measure` on Inception-v3
    with the ``found`` weights (and their SHA-256), or, when NotMeasured, why not (nothing is
    built)."""
    if isinstance(found, NotMeasured):
        log.warning("FID and KID not measured: %s", found.reason)
        return SampleQuality(found.record())
    measured = measure(
        contexts, inception(found, model_device(contexts[0].model)), progress=progress
    )
    return SampleQuality(
        {**measured.record, "weights_sha256": found.sha256}, measured.sd, measured.seeds
    )


def measure(
    contexts: list[Context], extractor: nn.Module, *, progress: bool = False
) -> SampleQuality:
    """FID and KID of every replicate's samples and reconstructions against the test split, on
    ``extractor``'s features: the means over seeds (their sds apart), the image counts and
    the KID subsets. The test split's features are extracted once for all replicates."""
    first = contexts[0]
    settings = first.settings.inception
    device = model_device(first.model)
    test = extract(
        extractor,
        batches(first.test, first.batch_size, device),
        device=device,
        count=len(first.test),
        what="test images",
        progress=progress,
    )
    replicates = [
        replicate_distances(ctx, test, extractor, settings, device=device, progress=progress)
        for ctx in contexts
    ]
    means, sds, _intervals = combine(replicates, bootstrap_seed=first.seed)
    counts = {"test": len(first.test), "sample": len(first.samples), "recon": len(first.test)}
    record = {
        "measured": True,
        **means,
        "images": counts,
        "kid_subsets": settings.kid_subsets,
        "kid_subset_size": {
            source: kid_subset_size(settings, counts["test"], counts[source]) for source in MEASURED
        },
        "note": BIAS,
    }
    log.info(
        "%s: FID samples %.2f, reconstructions %.2f; KID %.4f, %.4f "
        "(%d test images, %d samples, %d seed(s))",
        first.variant,
        means["fid"]["sample"],
        means["fid"]["recon"],
        means["kid"]["sample"],
        means["kid"]["recon"],
        counts["test"],
        counts["sample"],
        len(contexts),
    )
    return SampleQuality(record, {RECORD: sds}, {r.seed: r.metrics for r in replicates})


def replicate_distances(
    ctx: Context,
    test: Tensor,
    extractor: nn.Module,
    settings: InceptionConfig,
    *,
    device: torch.device,
    progress: bool,
) -> Replicate:
    """One replicate's FID and KID of its samples and of its reconstructions against the
    ``test`` features."""
    fake = {
        "sample": extract(
            extractor,
            torch.split(ctx.samples, ctx.batch_size),
            device=device,
            count=len(ctx.samples),
            what=f"samples, seed {ctx.replicate}",
            progress=progress,
        ),
        "recon": extract(
            extractor,
            reconstructions(ctx.model, ctx.test, ctx.batch_size),
            device=device,
            count=len(ctx.test),
            what=f"reconstructions, seed {ctx.replicate}",
            progress=progress,
        ),
    }
    measured = {
        source: distances(test, features, settings, seed=ctx.seed)
        for source, features in fake.items()
    }
    tree = {
        name: {source: measured[source][name] for source in MEASURED} for name in measured["sample"]
    }
    return Replicate(ctx.replicate, tree, {}, {})
