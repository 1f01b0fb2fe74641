"""The whole of params.yaml as one validated, typed object."""

from __future__ import annotations

from pydantic import Field

from vaelab.config.base import Section
from vaelab.config.data import DataConfig


class Params(Section):
    seed: int = Field(0, ge=0)
    data: DataConfig = DataConfig()
