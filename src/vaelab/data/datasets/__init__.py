"""One module per data set, each with ``download`` and ``catalog`` (see :mod:`.base`)."""

from __future__ import annotations

from types import ModuleType

from vaelab.data.datasets import celeba, cifar10, lfw, mnist

DATASETS: dict[str, ModuleType] = {
    "lfw": lfw,
    "celeba": celeba,
    "mnist": mnist,
    "cifar10": cifar10,
}
