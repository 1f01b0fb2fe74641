"""Running sums of loss terms over an epoch, weighted by batch size."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist


class LossMeter:
    """Batch-size-weighted sums of named loss terms, and their means (over every rank)."""

    def __init__(self, sums: dict[str, float] | None = None, count: float = 0.0) -> None:
        self.sums = dict(sums or {})
        self.count = count

    def add(self, terms: dict[str, float], count: int) -> None:
        """Add one batch's mean terms, ``count`` images."""
        for name, value in terms.items():
            self.sums[name] = self.sums.get(name, 0.0) + value * count
        self.count += count

    def mean(self, name: str) -> float:
        """This rank's running mean of one term (for the progress bar)."""
        return self.sums[name] / max(self.count, 1.0)

    def means(self) -> dict[str, float]:
        """The mean of every term, over every rank when distributed."""
        names = sorted(self.sums)
        totals = torch.tensor([self.sums[k] for k in names] + [self.count], dtype=torch.float64)
        if dist.is_initialized():
            dist.all_reduce(totals)
        count = max(totals[-1].item(), 1.0)
        return {name: totals[i].item() / count for i, name in enumerate(names)}

    def state_dict(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "count": self.count}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> LossMeter:
        return cls(state["sums"], state["count"])
