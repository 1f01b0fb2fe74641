"""The ``train:`` section of params.yaml: shared by every variant."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from vaelab.config.section import Section


class GmmConfig(Section):
    """The ex-post density of Ghosh et al. 2020: after training, a Gaussian mixture fitted to
    each replicate's codes of the training split and saved with it, for
    ``evaluate.sampler: gmm``."""

    # Full-covariance components (fewer when the training split has fewer images); 0 = none.
    components: int = Field(10, ge=0, le=1000)
    # Codes with more values get no mixture: K full D×D covariances are K·D²·8 bytes (21 MB for
    # 10 at D = 512), and ae_conv's 4,096-value code map at 32×32 would take 1.3 GB.
    max_dim: int = Field(512, ge=1)


class TrainConfig(Section):
    # Replicate trainings of every variant, with seeds seed, seed + 1, ...: the findings'
    # intervals come from their spread. 1 is fine for a big CelebA run.
    seeds: int = Field(1, ge=1, le=100)
    epochs: int = Field(10, gt=0)
    batch_size: int = Field(64, gt=0)
    lr: float = Field(1e-3, gt=0.0)
    # auto: cuda, then mps, then cpu.
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    # auto: bf16 autocast on a GPU that supports it, fp32 elsewhere.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    compile: bool = False
    # Save a resumable checkpoint every N optimizer steps, and at an epoch end when the last
    # one is checkpoint_seconds old or older (0: at every epoch end); the last epoch always
    # saves. Epochs of a few milliseconds (the embedded data set) would otherwise spend a
    # tenth of their time writing checkpoints; where they last seconds, every end saves.
    checkpoint_every: int = Field(200, gt=0)
    checkpoint_seconds: float = Field(30.0, ge=0.0, allow_inf_nan=False)
    checkpoint_dir: str = "checkpoints"
    # Intra-op CPU threads (torch.set_num_threads, which sets OpenMP's and MKL's too). The
    # trained bytes depend on it; null keeps torch's own count (one per physical core, or
    # OMP_NUM_THREADS), fixed for a machine. Set a number to train the same bytes on
    # machines of one CPU type with other core counts.
    threads: int | None = Field(None, ge=1, le=1024)
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
    # Flip a random half of every training batch left-right (faces; not for digits).
    hflip: bool = False
    # Fitted after the last epoch; it changes no weight, so it is no part of a checkpoint's key.
    gmm: GmmConfig = GmmConfig()
