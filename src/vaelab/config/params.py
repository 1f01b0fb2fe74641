"""The whole of params.yaml as one validated, typed object."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from vaelab.config.data_config import DataConfig
from vaelab.config.evaluate_config import EvaluateConfig
from vaelab.config.model_config import AePoolConfig, ModelConfig
from vaelab.config.registry_config import RegistryConfig
from vaelab.config.section import Section
from vaelab.config.train_config import TrainConfig

# reports/<variant>/ sits beside these stage outputs, so variants may not take their names.
RESERVED_VARIANT_NAMES = frozenset({"compare", "chain", "pr"})


def _default_models() -> dict[str, ModelConfig]:
    return {"ae_pool": AePoolConfig()}


class Params(Section):
    """The whole of params.yaml."""

    seed: int = Field(
        0,
        ge=0,
        description="The pipeline's seed: the split, the first replicate's training, every "
        "sample and bootstrap draw.",
    )
    data: DataConfig = Field(DataConfig(), description="What to download and how to prepare it.")
    train: TrainConfig = Field(TrainConfig(), description="How every variant is trained.")
    models: dict[str, ModelConfig] = Field(
        default_factory=_default_models,
        description="Variant name -> architecture and knobs; train@<variant> runs once per entry.",
    )
    evaluate: EvaluateConfig = Field(
        EvaluateConfig(), description="What evaluate, chain and compare measure and draw."
    )
    registry: RegistryConfig = Field(
        RegistryConfig(), description="How register names and ranks model versions."
    )

    @field_validator("models")
    @classmethod
    def _variant_names_are_path_safe(cls, models: dict[str, ModelConfig]) -> dict[str, ModelConfig]:
        for name in models:
            if not name or not all(c.isalnum() or c in "_-" for c in name):
                raise ValueError(
                    f"variant name {name!r} must use letters, digits, '_' or '-' "
                    "(it names folders and DVC stages)"
                )
        if not models:
            raise ValueError("at least one variant is needed")
        reserved = RESERVED_VARIANT_NAMES.intersection(models)
        if reserved:
            raise ValueError(
                f"variant name(s) {', '.join(sorted(reserved))} are taken by the pipeline's own "
                "reports/<name> folders; pick another name"
            )
        return models

    def replicate_seeds(self) -> list[int]:
        """The training seeds of every variant's replicates: ``seed``, ``seed + 1``, …"""
        return [self.seed + k for k in range(self.train.seeds)]

    @model_validator(mode="after")
    def _references_name_variants(self) -> Params:
        # Every params entry that names another one is checked here, when params load, so
        # that a typo or a removed variant is one message, not a missing folder inside DVC.
        chain = self.evaluate.chain
        if chain is not None:
            for role, name in (("vae", chain.vae), ("ae", chain.ae)):
                if name not in self.models:
                    raise ValueError(
                        f"evaluate.chain.{role}: {name!r} is not a variant of models: "
                        f"(allowed: {', '.join(self.models)}); name one of them, or set "
                        "evaluate.chain: null to skip the chain"
                    )
        return self
