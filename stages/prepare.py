"""DVC stage `prepare`: crop, resize and split into data/prepared/ and metrics/data.json."""

from __future__ import annotations

import argparse

from vaelab.config import load_params
from vaelab.data.prepare import run_prepare
from vaelab.errors import exit_on_user_error
from vaelab.logs import setup_logging


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    args = parser.parse_args(argv)
    setup_logging()
    run_prepare(load_params(args.params))


if __name__ == "__main__":
    main()
