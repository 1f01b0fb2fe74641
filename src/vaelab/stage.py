"""The one ``main`` every ``stages/*.py`` script shares: parse args, load and validate
params.yaml, set up logging, run the stage; a UserError exits 2 with one message."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from vaelab.config import Params, load_params
from vaelab.errors import exit_on_user_error
from vaelab.lifetime import exit_with_parent
from vaelab.logs import setup_logging


def stage_main(description: str | None, run: Callable[..., Any], *, per_variant: bool = False) -> Callable[..., None]:
    """A ``main(argv=None)`` that calls ``run(params)``, or ``run(params, variant)`` with ``per_variant``."""

    @exit_on_user_error
    def main(argv: list[str] | None = None) -> None:
        parser = argparse.ArgumentParser(description=description)
        if per_variant:
            parser.add_argument("variant", help="a key of models: in params.yaml")
        parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
        args = parser.parse_args(argv)
        # Killing dvc must not leave the stage running on, to overwrite a later run's outputs.
        exit_with_parent()
        setup_logging()
        params: Params = load_params(args.params)
        if per_variant:
            run(params, args.variant)
        else:
            run(params)

    return main
