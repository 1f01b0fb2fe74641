"""The `vaelab` command for people: check params, run a stage by name."""

from __future__ import annotations

import argparse
import json

import yaml

from vaelab.config import load_params
from vaelab.errors import exit_on_user_error
from vaelab.logs import setup_logging
from vaelab.prdiff.command import add_commands as add_report_commands
from vaelab.registry.generate import add_commands as add_registry_commands
from vaelab.registry.serve import add_commands as add_serve_commands
from vaelab.registry.ui import add_commands as add_ui_commands


def _params(args: argparse.Namespace) -> None:
    if args.schema:
        from vaelab.config.reference import schema

        print(json.dumps(schema(), indent=2, ensure_ascii=False))
        return
    params = load_params(args.params)
    print(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False), end="")


def _download(args: argparse.Namespace) -> None:
    from vaelab.data.download import run_download

    run_download(load_params(args.params))


def _prepare(args: argparse.Namespace) -> None:
    from vaelab.data.prepare import run_prepare

    run_prepare(load_params(args.params))


def _summary(args: argparse.Namespace) -> None:
    from pydantic import ValidationError

    from vaelab.config.model_config import parse_model_config
    from vaelab.errors import UserError
    from vaelab.models import build_model, summarize
    from vaelab.models.vae import VAE_CONV_PRESETS

    if args.preset:
        if args.preset not in VAE_CONV_PRESETS:
            raise UserError(
                f"--preset {args.preset}: unknown; choose one of {', '.join(VAE_CONV_PRESETS)}"
            )
        raw = VAE_CONV_PRESETS[args.preset].model_dump()
    else:
        raw = {"arch": args.arch}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--set {item}: expected KEY=VALUE, e.g. --set z_dim=128")
        raw[key] = yaml.safe_load(value)
    try:
        config = parse_model_config(raw)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'arch'}: {e['msg']}" for e in err.errors()
        )
        raise UserError(f"model options {raw}: {problems}") from None
    model = build_model(config, image_size=args.image_size, channels=args.channels)
    print(summarize(model))


def build_parser() -> argparse.ArgumentParser:
    """The ``vaelab`` command line and its subcommands."""
    parser = argparse.ArgumentParser(prog="vaelab", description=__doc__)
    parser.add_argument(
        "--params", default="params.yaml", help="params file (default: params.yaml)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    params = commands.add_parser(
        "params", help="validate params.yaml and print it with every default filled in"
    )
    params.add_argument(
        "--schema", action="store_true", help="print params.yaml's JSON Schema instead"
    )
    params.set_defaults(func=_params)
    commands.add_parser("download", help="run the download stage outside DVC").set_defaults(
        func=_download
    )
    commands.add_parser("prepare", help="run the prepare stage outside DVC").set_defaults(
        func=_prepare
    )
    summary = commands.add_parser(
        "summary",
        help="print an architecture's layers, output shapes and parameter counts (like Keras)",
    )
    summary.add_argument(
        "arch", nargs="?", default="vae_conv", help="architecture name (see params.yaml models:)"
    )
    summary.add_argument("--image-size", type=int, default=64)
    summary.add_argument("--channels", type=int, choices=(1, 3), default=3)
    summary.add_argument("--preset", help="a vae_conv preset: study001_vae_v1 or study003_celeba")
    summary.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a model option, repeatable"
    )
    summary.set_defaults(func=_summary)
    add_report_commands(commands)
    add_registry_commands(commands)
    add_serve_commands(commands)
    add_ui_commands(commands)
    return parser


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    """Run the ``vaelab`` subcommand named in ``argv``."""
    args = build_parser().parse_args(argv)
    setup_logging()
    args.func(args)


if __name__ == "__main__":
    main()
