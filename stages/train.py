"""DVC stage `train@<variant>`: train one variant of params.yaml models: into models/<variant>/."""

from __future__ import annotations

import argparse

from vaelab.config import load_params
from vaelab.errors import exit_on_user_error
from vaelab.logs import setup_logging
from vaelab.train.run import run_train


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("variant", help="a key of models: in params.yaml")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    args = parser.parse_args(argv)
    setup_logging()
    run_train(load_params(args.params), args.variant)


if __name__ == "__main__":
    main()
