"""Keras-like ``model.summary()`` tables, so our models can be checked against the seeds.

Rows come from forward hooks on leaf modules during one forward pass of a zero batch,
so they list layers in execution order with their real output shapes (PyTorch's
``(N, C, H, W)`` order). Parameter counts follow Keras: batch-norm running mean and
variance count as non-trainable parameters (Keras' "moving" statistics);
``num_batches_tracked`` is bookkeeping and is not counted. Parameter-free activations
are left out, as Keras folds them into the preceding layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from vaelab.models.interface import Autoencoder
from vaelab.models.layers import UpsampleTo

_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.ELU, nn.GELU, nn.SiLU, nn.Identity)
_RUNNING_STATS = ("running_mean", "running_var")

# Keras layer names, so rows read like the studies' tables ("conv2d_1", "dense", ...).
# Order matters: subclasses (SameConv2d) must not be mistaken for another entry.
_KERAS_NAMES: tuple[tuple[type[nn.Module], str], ...] = (
    (nn.ConvTranspose2d, "conv2d_transpose"),
    (nn.Conv2d, "conv2d"),
    (nn.MaxPool2d, "max_pooling2d"),
    (nn.BatchNorm2d, "batch_normalization"),
    (nn.BatchNorm1d, "batch_normalization"),
    (nn.Linear, "dense"),
    (UpsampleTo, "up_sampling2d"),
    (nn.Upsample, "up_sampling2d"),
    (nn.Flatten, "flatten"),
    (nn.Unflatten, "reshape"),
)


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts of a module, Keras style."""

    trainable: int
    non_trainable: int

    @property
    def total(self) -> int:
        return self.trainable + self.non_trainable


def _running_stats(module: nn.Module, recurse: bool) -> int:
    return sum(
        buffer.numel()
        for name, buffer in module.named_buffers(recurse=recurse)
        if name.rsplit(".", 1)[-1] in _RUNNING_STATS
    )


def count_params(module: nn.Module) -> ParamCounts:
    """Trainable parameters, and non-trainable ones (frozen parameters + batch-norm running
    statistics)."""
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in module.parameters() if not p.requires_grad)
    return ParamCounts(
        trainable=trainable, non_trainable=frozen + _running_stats(module, recurse=True)
    )


@dataclass(frozen=True)
class _Row:
    name: str
    kind: str
    shape: str
    params: int


class _Namer:
    """Keras-style unique names: the first ``conv2d``, then ``conv2d_1``, ``conv2d_2``, ..."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def __call__(self, module: nn.Module) -> str:
        base = next(
            (name for cls, name in _KERAS_NAMES if isinstance(module, cls)),
            type(module).__name__.lower(),
        )
        count = self._seen.get(base, 0)
        self._seen[base] = count + 1
        return base if count == 0 else f"{base}_{count}"


def _shape(value: object) -> str:
    if isinstance(value, Tensor):
        return "(" + ", ".join(["None", *(str(d) for d in value.shape[1:])]) + ")"
    if isinstance(value, tuple | list):
        return ", ".join(_shape(item) for item in value)
    return type(value).__name__


def _trace(root: nn.Module, run: Callable[[], object], namer: _Namer) -> list[_Row]:
    """Run ``run()`` with hooks on the leaf modules under ``root``; one row per call, in order."""
    rows: list[_Row] = []

    def hook(module: nn.Module, _inputs: object, output: object) -> None:
        own = sum(p.numel() for p in module.parameters(recurse=False))
        rows.append(
            _Row(
                namer(module),
                type(module).__name__,
                _shape(output),
                own + _running_stats(module, False),
            )
        )

    handles = [
        module.register_forward_hook(hook)
        for module in root.modules()
        if next(module.children(), None) is None and not isinstance(module, _ACTIVATIONS)
    ]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return rows


def _table(
    title: str, input_name: str, input_shape: str, rows: list[_Row], counts: ParamCounts
) -> str:
    cells = [(f"{input_name} (Input)", input_shape, "0")]
    cells += [(f"{row.name} ({row.kind})", row.shape, f"{row.params:,}") for row in rows]
    headers = ("Layer (type)", "Output Shape", "Param #")
    widths = [max(len(headers[i]), *(len(cell[i]) for cell in cells)) + 3 for i in range(3)]
    width = sum(widths)

    def line(cell: tuple[str, str, str]) -> str:
        return "".join(text.ljust(widths[i]) for i, text in enumerate(cell)).rstrip()

    out = [f'Model: "{title}"', "_" * width, line(headers), "=" * width]
    for index, cell in enumerate(cells):
        out.append(line(cell))
        out.append("=" * width if index == len(cells) - 1 else "_" * width)
    out += [
        f"Total params: {counts.total:,}",
        f"Trainable params: {counts.trainable:,}",
        f"Non-trainable params: {counts.non_trainable:,}",
        "_" * width,
    ]
    return "\n".join(out)


def summarize(
    model: Autoencoder, image_size: int | None = None, channels: int | None = None
) -> str:
    """A Keras-like table of ``model`` for ``channels``×``image_size``×``image_size`` inputs.

    Defaults to the model's own geometry. VAEs get an encoder table and a decoder table,
    each with its own totals (as in study 001), a table for any other submodule, which takes
    images (a VAE-GAN's discriminator), then the combined total. The model is run
    once in eval mode without gradients (so batch-norm statistics are untouched) and its
    train/eval mode is restored afterwards.
    """
    image_size = model.image_size if image_size is None else image_size
    channels = model.channels if channels is None else channels
    reference = next(model.parameters())
    x = torch.zeros(
        1, channels, image_size, image_size, device=reference.device, dtype=reference.dtype
    )
    namer = _Namer()
    name = type(model).__name__
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if not model.is_variational:
                rows = _trace(model, lambda: model(x), namer)
                return _table(name, "input_1", _shape(x), rows, count_params(model))
            encoder, decoder = model.get_submodule("encoder"), model.get_submodule("decoder")
            z = torch.zeros(1, *model.latent_shape, device=reference.device, dtype=reference.dtype)
            encoder_rows = _trace(encoder, lambda: encoder(x), namer)
            decoder_rows = _trace(decoder, lambda: decoder(z), namer)
            others = {
                child_name: (child, _trace(child, partial(child, x), namer))
                for child_name, child in model.named_children()
                if child_name not in ("encoder", "decoder")
            }
    finally:
        model.train(was_training)
    encoder_counts, decoder_counts = count_params(encoder), count_params(decoder)
    overall = count_params(model)
    # What the total adds to encoder and decoder: the other tables' submodules and the model's
    # own parameters (a learned decoder log σ).
    own = [f" + {part}" for part in others] + [
        f" + {param}" for param, _value in model.named_parameters(recurse=False)
    ]
    return "\n\n".join(
        [
            _table(f"{name}.encoder", "input_1", _shape(x), encoder_rows, encoder_counts),
            _table(f"{name}.decoder", "input_2", _shape(z), decoder_rows, decoder_counts),
            *(
                _table(f"{name}.{part}", f"input_{index}", _shape(x), rows, count_params(child))
                for index, (part, (child, rows)) in enumerate(others.items(), start=3)
            ),
            f"Total params (encoder + decoder{''.join(own)}): {overall.total:,}\n"
            f"Trainable params: {overall.trainable:,}\n"
            f"Non-trainable params: {overall.non_trainable:,}",
        ]
    )
