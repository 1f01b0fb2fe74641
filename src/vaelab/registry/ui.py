"""``vaelab ui`` (``make ui``): the MLflow UI over the project's tracking store, opened on the
``vaelab`` experiment.

The store is the one every stage uses (:func:`vaelab.tracking.tracking_uri`:
``MLFLOW_TRACKING_URI``, else ``mlflow.db`` at the project's root). A local store gets an
``mlflow server`` on 127.0.0.1 (one worker) that runs until Ctrl-C; the command prints the
address of the ``vaelab`` experiment's page once the server answers, so the UI does not
open on MLflow's empty ``Default`` experiment (which stays: MLflow's fluent API falls back on
it, and deleting it would break a notebook's ``mlflow.start_run()``). Ctrl-C or SIGTERM stops
the server and its worker. A tracking server (``http(s)://``) is its own
UI: the command prints that address and starts nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from urllib.parse import urlsplit

from vaelab.config import load_params
from vaelab.errors import UserError
from vaelab.lifetime import exit_with_parent
from vaelab.tracking import experiment_id, tracking_uri
from vaelab.tracking_http import connect, display_uri

log = logging.getLogger("vaelab.registry")

HOST = "127.0.0.1"
DEFAULT_PORT = 5000
READY_S = 120.0  # how long the server may take to answer (a new store runs its migrations)
STOP_S = 15.0  # how long it may take to stop


# MLflow 3's UI opens in its GenAI view (traces) unless the address asks for model training.
RUNS_PAGE = "runs?workflowType=machine_learning"


def experiment_url(base: str, exp_id: str) -> str:
    """The runs table of experiment ``exp_id`` on the server at ``base``, in the UI's model
    training view (variants, their seeds nested under them)."""
    return f"{base.rstrip('/')}/#/experiments/{exp_id}/{RUNS_PAGE}"


def server_command(uri: str, port: int) -> list[str]:
    """``mlflow server`` over the store ``uri`` on 127.0.0.1:``port``, one worker."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        uri,
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def wait_until_ready(process: subprocess.Popen[bytes], base: str, deadline_s: float) -> None:
    """Return once ``base``/health answers 200; UserError when the server exits first or does
    not answer within ``deadline_s`` seconds."""
    import requests

    deadline = time.monotonic() + deadline_s
    while True:
        if process.poll() is not None:
            raise UserError(
                f"mlflow server on {base} exited with status {process.returncode} before "
                "answering (its output is above; a port in use? choose another with --port)"
            )
        try:
            if requests.get(f"{base}/health", timeout=1.0).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass  # not listening yet, or not answering yet: what this loop waits for
        if time.monotonic() > deadline:
            raise UserError(
                f"mlflow server on {base} did not answer within {deadline_s:g} s "
                "(its output is above)"
            )
        time.sleep(0.25)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group, then SIGKILL to whatever is left of it."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_S)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_S)


def run_ui(params_file: str, port: int) -> None:
    """Print the ``vaelab`` experiment's UI address; for a local store, serve it until Ctrl-C."""
    uri = tracking_uri()
    with connect(uri, load_params(params_file).registry) as client:
        exp_id = experiment_id(client, uri)
    if urlsplit(uri).scheme in ("http", "https"):
        print(f"MLflow UI of {display_uri(uri)}: {experiment_url(uri, exp_id)}", flush=True)
        return
    base = f"http://{HOST}:{port}"
    exit_with_parent()  # SIGTERM (or the parent's end) stops the server too, via finally
    # Its own process group: Ctrl-C reaches this process, which stops the server and its worker.
    process = subprocess.Popen(server_command(uri, port), start_new_session=True)
    try:
        wait_until_ready(process, base, READY_S)
        print(
            f"MLflow UI over {display_uri(uri)}, experiment vaelab: "
            f"{experiment_url(base, exp_id)}  (Ctrl-C stops it)",
            flush=True,
        )
        process.wait()
    except KeyboardInterrupt:
        log.info("stopping the MLflow UI")
    finally:
        stop(process)


def _ui_command(args: argparse.Namespace) -> None:
    run_ui(args.params, args.port)


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``ui`` on the ``vaelab`` command."""
    ui = subparsers.add_parser(
        "ui",
        help="start the MLflow UI on 127.0.0.1 over the project's tracking store and print "
        "the address of the vaelab experiment",
    )
    ui.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port on 127.0.0.1 (default: {DEFAULT_PORT})",
    )
    ui.set_defaults(func=_ui_command)
