"""The ``train:`` section of params.yaml: shared by every variant."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from vaelab.config.section import Section


class GmmConfig(Section):
    """The ex-post density of Ghosh et al. 2020: after training, a Gaussian mixture fitted to
    each replicate's codes of the training split and saved with it, for
    ``evaluate.sampler: gmm``."""

    components: int = Field(
        10,
        ge=0,
        le=1000,
        description="Full-covariance Gaussians of the mixture (fewer when the training split "
        "has fewer images); 0 fits none.",
    )
    max_dim: int = Field(
        512,
        ge=1,
        description="Codes with more values get no mixture: K full D×D covariances are K·D²·8 "
        "bytes (21 MB for 10 at D = 512; ae_conv's 4,096-value code at 32×32 would take 1.3 GB).",
    )


class TrainConfig(Section):
    """The ``train:`` section: how every variant is trained."""

    seeds: int = Field(
        1,
        ge=1,
        le=100,
        description="Replicate trainings of every variant, with seeds seed, seed + 1, ...: the "
        "findings' intervals come from their spread. 1 is fine for a big CelebA run.",
    )
    epochs: int = Field(
        10, gt=0, description="Epochs of every variant whose models: entry sets no epochs."
    )
    batch_size: int = Field(64, gt=0, description="Training images per optimizer step.")
    lr: float = Field(1e-3, gt=0.0, description="Adam's learning rate.")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="Where training runs; auto: cuda, then mps, then cpu."
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 autocast on a GPU that supports it, fp32 elsewhere."
    )
    compile: bool = Field(False, description="torch.compile the model before training.")
    checkpoint_every: int = Field(
        200,
        gt=0,
        description="Save a resumable checkpoint every N optimizer steps (and after the last "
        "epoch, always).",
    )
    checkpoint_seconds: float = Field(
        30.0,
        ge=0.0,
        allow_inf_nan=False,
        description="Also save at an epoch end when the last checkpoint is this many seconds "
        "old (0: at every epoch end): epochs of a few milliseconds would otherwise spend a "
        "tenth of their time writing checkpoints.",
    )
    checkpoint_dir: str = Field(
        "checkpoints", description="Folder of the checkpoints, checkpoints/<variant>/seed<k>.pt."
    )
    threads: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="Intra-op CPU threads (torch.set_num_threads, which sets OpenMP's and MKL's "
        "too). The trained bytes depend on it; null keeps torch's own count (one per physical "
        "core, or OMP_NUM_THREADS). Set a number to train the same bytes on machines of one "
        "CPU type with other core counts.",
    )
    portable_kernels: bool = Field(
        True,
        description=(
            "Pin the CPU kernels of torch, oneDNN, MKL, OpenBLAS and numpy to AVX2 in every "
            "stage that computes a number (vaelab.kernels), so that x86-64 CPUs of other "
            "models compute the same bytes; false lets each library pick the fastest kernels "
            "for this CPU. No effect on GPU kernels or on aarch64. Part of the training "
            "checkpoint's key: a change retrains."
        ),
    )
    processes: Annotated[int, Field(ge=1, le=1024)] | Literal["auto"] = Field(
        1,
        description=(
            "Processes that train one variant together (DDP): 1 trains in the stage's own "
            "process; N > 1 relaunches the train stage under torchrun's standalone launcher as "
            "N ranks on this machine (one per GPU, or gloo on CPU); auto: one per visible GPU "
            "(1 without a GPU). Other bytes than one process: part of the checkpoint's key."
        ),
    )
    hflip: bool = Field(
        False,
        description="Flip a random half of every training batch left-right, chosen by (seed, "
        "epoch) (faces; not for digits).",
    )
    gmm: GmmConfig = Field(
        GmmConfig(),
        description="The ex-post Gaussian mixture fitted after the last epoch; it changes no "
        "weight, so it is no part of a checkpoint's key.",
    )
