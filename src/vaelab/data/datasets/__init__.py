"""One module per data set, each with ``download`` and ``catalog`` (see :mod:`.catalog`)."""

from __future__ import annotations

from vaelab.data.datasets import celeba, cifar10, lfw, mnist
from vaelab.data.datasets.catalog import DatasetModule

DATASETS: dict[str, DatasetModule] = {
    "lfw": lfw,
    "celeba": celeba,
    "mnist": mnist,
    "cifar10": cifar10,
}
