"""The one ``main`` every ``stages/*.py`` script shares: parse args, load and validate
params.yaml, set up logging, then import and run the stage; a UserError exits 2 with one
message.

The stage's module is named, not imported, by the script
(``"vaelab.evaluate.evaluate:run_evaluate"``) and imported only once the arguments and
params.yaml are checked: torch, MLflow and matplotlib take seconds to import, and ``--help``
or a params mistake should not wait for them. (tests/test_dvc_deps.py reads the name as an
import.)"""

from __future__ import annotations

import argparse
import gc
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vaelab.config import Params, load_params
from vaelab.errors import exit_on_user_error
from vaelab.kernels import pin
from vaelab.lifetime import exit_with_parent
from vaelab.logs import setup_logging


def _runner(target: str) -> Callable[..., Any]:
    """``"package.module:function"`` → the function, importing the module now."""
    module, _, name = target.partition(":")
    function: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return function


def stage_main(
    description: str | None,
    run: str,
    *,
    per_variant: bool = False,
    relaunch: str | None = None,
    done: str | None = None,
) -> Callable[..., None]:
    """A ``main(argv=None)`` that calls ``run(params)``, or ``run(params, variant)`` with
    ``per_variant``; ``run`` is ``"module:function"``, imported after params are validated.

    ``done`` (``"module:function"``, called as ``run`` is, before it and before ``relaunch``)
    may find the stage's work done already and put its outputs in place: True ends the stage
    there, before ``run``'s module is imported (the train stage with a finished training).

    ``relaunch`` (``"module:function"``, called as ``function(params, script, argv)``) may run
    the stage in other processes instead (the train stage under torchrun: ``train.processes``)
    and return their exit status, which ``main`` exits with; None: this process runs it."""

    @exit_on_user_error
    def main(argv: list[str] | None = None) -> None:
        parser = argparse.ArgumentParser(description=description)
        if per_variant:
            parser.add_argument("variant", help="a key of models: in params.yaml")
        parser.add_argument(
            "--params", default="params.yaml", help="params file (default: params.yaml)"
        )
        args = parser.parse_args(argv)
        # Killing dvc must not leave the stage running on, to overwrite a later run's outputs.
        exit_with_parent()
        setup_logging()
        params: Params = load_params(args.params)
        # Before the stage's module imports torch and numpy: they choose kernels as they load.
        pin(params.train.portable_kernels)
        stage_args = (params, args.variant) if per_variant else (params,)
        if done is not None and _runner(done)(*stage_args):
            return
        if relaunch is not None:
            script = Path(sys.argv[0]).resolve()
            status = _runner(relaunch)(params, script, sys.argv[1:] if argv is None else argv)
            if status is not None:
                raise SystemExit(status)
        _runner(run)(*stage_args)

    return main


def run_script(main: Callable[[], None]) -> None:
    """A stage script's ``__main__``: ``main()``, then ``gc.freeze()`` on the way out, whether
    it returned or raised (SystemExit included).

    A stage process holds the objects of torch (with dynamo), MLflow and scikit-learn: the
    garbage collections of the interpreter's shutdown walk them all, 1.5-2 s per process
    (measured: a complete ``train`` stage's 9.5 s wall held 2.1 s after its last atexit
    handler). Frozen objects are left out of those collections; atexit handlers, ``finally``
    blocks and flushes run as before, and the memory goes back with the process. Only for a
    process that ends with the stage: a test calling ``main`` in-process keeps collecting.
    """
    try:
        main()
    finally:
        gc.freeze()
