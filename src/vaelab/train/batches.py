"""Batches from the prepared uint8 array, without per-image Python work inside an epoch.

The array is loaded once. On a GPU the whole split is copied to device memory when it
fits and batches are sliced there; elsewhere batches are gathered from a (pinned, on
CUDA) host tensor and moved. Either way the uint8 → float in [0, 1] step happens on the
device, and the order of an epoch depends only on (seed, epoch), so a resumed run sees
the same batches as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

# Leave this much of the GPU free for activations when deciding whether the split fits.
DEVICE_HEADROOM = 0.5


class Batches:
    """Shuffled batches of one split as float tensors (B, C, H, W) in [0, 1] on ``device``.

    With ``world_size`` > 1 each rank takes every ``world_size``-th item of the same
    permutation (and the last incomplete stride is dropped) so that ranks step together.
    With ``hflip`` a random half of the images is mirrored left-right; which ones depends
    only on (seed, epoch), like the order, so a resumed epoch flips the same images.
    """

    def __init__(
        self,
        images: np.ndarray,
        *,
        batch_size: int,
        device: torch.device,
        seed: int,
        shuffle: bool = True,
        hflip: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(
                f"expected (N, H, W, C) uint8 images, got {images.dtype} {images.shape}"
            )
        self.device = device
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.hflip = hflip
        self.rank = rank
        self.world_size = world_size
        host = torch.from_numpy(np.ascontiguousarray(images))
        self.on_device = device.type == "cuda" and _fits_on_device(host, device)
        if self.on_device:
            self.store = host.to(device)
        elif device.type == "cuda":
            self.store = host.pin_memory()
        else:
            self.store = host
        self.count = len(images)

    @property
    def items_per_rank(self) -> int:
        return self.count // self.world_size

    def __len__(self) -> int:
        return -(-self.items_per_rank // self.batch_size)

    def order(self, epoch: int) -> torch.Tensor:
        """This rank's item indices for ``epoch``, in the order they are served."""
        return self._for_rank(self._permutation(epoch))

    def _permutation(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.count)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.count, generator=generator)

    def _for_rank(self, items: torch.Tensor) -> torch.Tensor:
        usable = self.items_per_rank * self.world_size
        return items[:usable][self.rank :: self.world_size]

    def flips(self, epoch: int) -> torch.Tensor:
        """Which served images of ``epoch`` are mirrored: a bool per entry of :meth:`order`."""
        # Its own generator (not the shuffle's), so turning hflip on leaves the order as it was.
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch + 7_919)
        return self._for_rank(torch.rand(self.count, generator=generator) < 0.5)

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[torch.Tensor]:
        """The batches of ``epoch``, from ``start_batch`` on (for resuming mid-epoch)."""
        order = self.order(epoch)
        flips = self.flips(epoch) if self.hflip else None
        if self.on_device:
            order = order.to(self.device)
        for first in range(start_batch * self.batch_size, len(order), self.batch_size):
            picked = self.store[order[first : first + self.batch_size]]
            if not self.on_device:
                picked = picked.to(self.device, non_blocking=True)
            if flips is not None:
                mirror = flips[first : first + self.batch_size].to(picked.device)
                # (B, H, W, C): axis 2 is the image's width.
                picked = torch.where(mirror[:, None, None, None], picked.flip(2), picked)
            yield picked.permute(0, 3, 1, 2).float().div_(255.0)


def _fits_on_device(host: torch.Tensor, device: torch.device) -> bool:
    free, _total = torch.cuda.mem_get_info(device)
    return host.numel() * host.element_size() < free * DEVICE_HEADROOM
