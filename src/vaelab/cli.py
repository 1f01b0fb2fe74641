"""The `vaelab` command for people: check params, run a stage by name."""

from __future__ import annotations

import argparse

import yaml

from vaelab.config import load_params
from vaelab.errors import exit_on_user_error
from vaelab.logs import setup_logging


def _params(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    print(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False), end="")


def _download(args: argparse.Namespace) -> None:
    from vaelab.data.download import run_download

    run_download(load_params(args.params))


def _prepare(args: argparse.Namespace) -> None:
    from vaelab.data.prepare import run_prepare

    run_prepare(load_params(args.params))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vaelab", description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("params", help="validate params.yaml and print it with every default filled in").set_defaults(
        func=_params
    )
    commands.add_parser("download", help="run the download stage outside DVC").set_defaults(func=_download)
    commands.add_parser("prepare", help="run the prepare stage outside DVC").set_defaults(func=_prepare)
    return parser


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging()
    args.func(args)


if __name__ == "__main__":
    main()
