"""The README's quick start, run as written: every shell block marked ```` ```bash quickstart ````
runs in order, on a temporary copy of the project with tiny params after one `dvc repro` (what
`make repro` leaves), and must exit 0. A block marked ```` ```bash quickstart-server ```` starts a
server (on a free port, given as ``UI_PORT``): it must print an http:// URL on stdout that
answers, and Ctrl-C (SIGINT) must stop it. The two set-up commands
(`make repro`, `make test`) are left unmarked: CI runs them."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.support.project import REPO, copy_project, project_env, run, small_pipeline

BLOCK = re.compile(r"^```bash (quickstart(?:-server)?)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
URL = re.compile(r"http://[\w.:-]+/?")
STOP_S = 30  # how long the block may take to stop
BLOCK_TIMEOUT_S = 900
SERVER_DEADLINE_S = 120
README_TEXT = (REPO / "README.md").read_text(encoding="utf-8")
# `make` in a block uses this test's venv, its install step taken as done (as tests/test_make.py):
# the venv's stamp and the plots page `make install` writes.
VENV = Path(sys.executable).parent.parent
PRELUDE = (
    f'make() {{ command make -o "{VENV}/.vaelab-installed" -o .dvc/plots/page.html '
    f'VENV="{VENV}" "$@"; }}\n'
)


def quickstart_blocks(text: str) -> list[tuple[str, str]]:
    """(kind, script) of every marked block of ``text``, in order."""
    return [(match.group(1), match.group(2)) for match in BLOCK.finditer(text)]


def test_quickstart_blocks_are_found():
    text = "a\n```bash quickstart\nls\n```\n```bash\nno\n```\n```bash quickstart-server\nx\n```\n"
    assert quickstart_blocks(text) == [("quickstart", "ls\n"), ("quickstart-server", "x\n")]
    assert quickstart_blocks(README_TEXT), "README.md marks no quick-start block"


def tiny_project(dest: Path) -> Path:
    """A copy of the project whose variants carry the default names the README uses (``vae``,
    ``ae_pool``) but are tiny, reproduced and committed like a clone after `make repro`."""
    repo = copy_project(dest)
    shutil.copy2(REPO / "Makefile", repo / "Makefile")
    params = small_pipeline(yaml.safe_load((repo / "params.yaml").read_text()), seeds=1, epochs=1)
    params["models"] = {
        "ae_pool": {"arch": "ae_pool"},
        # The knobs the README's commands set (dvc exp run -S) must be in the file, as in the
        # default params.yaml: DVC overrides keys, it does not add them.
        "vae": {"arch": "vae_conv", "filters": [8, 16], "z_dim": 4, "kl_weight": 0.5},
    }
    params["evaluate"]["chain"] = {"vae": "vae", "ae": "ae_pool", "passes": 2}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "tiny"], repo)
    run([sys.executable, "-m", "dvc", "repro"], repo, timeout=BLOCK_TIMEOUT_S)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "results"], repo)
    return repo


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers(url: str) -> bool:
    """Whether ``url`` answers 200 within a few seconds."""
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def printed_url(lines: queue.Queue[str | None], deadline: float, seen: list[str]) -> str:
    """The first http:// URL among the lines read into ``lines`` (None: the output ended),
    waiting no later than ``deadline``; every line read is appended to ``seen``."""
    while True:
        left = deadline - time.monotonic()
        assert left > 0, "no URL printed within the deadline:\n" + "".join(seen)
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            continue
        assert line is not None, "the command ended without printing a URL:\n" + "".join(seen)
        seen.append(line)
        if match := URL.search(line):
            return match.group(0)


def stop_group(server: subprocess.Popen[str], sig: int) -> None:
    """Send ``sig`` to the block's process group and wait for the block to end; SIGKILL what
    is left when it does not end in time (the test then fails)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, sig)
    try:
        server.wait(timeout=STOP_S)
    except subprocess.TimeoutExpired as err:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=STOP_S)
        raise AssertionError(f"the block did not stop within {STOP_S} s of signal {sig}") from err


def run_server_block(script: str, repo: Path, log: Path) -> None:
    """Start ``script`` on a free port (``UI_PORT``, which `make ui` takes), wait for the URL it
    prints on stdout, GET it, then stop it with Ctrl-C's SIGINT, as a person would: the URL must
    stop answering (the server is gone, not orphaned). Its stderr goes to ``log``."""
    with log.open("w") as errors:
        server = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", PRELUDE + script],
            cwd=repo,
            env={**project_env(repo), "UI_PORT": str(free_port())},
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            start_new_session=True,
        )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:  # readline blocks: a thread, so the deadline holds
        for line in server.stdout:  # type: ignore[union-attr]
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + SERVER_DEADLINE_S
        try:
            url = printed_url(lines, deadline, seen)
        except AssertionError as err:
            raise AssertionError(f"{err}\nstderr:\n{log.read_text()[-4000:]}") from None
        while not answers(url):
            assert time.monotonic() < deadline and server.poll() is None, (
                f"{url} never answered:\n{''.join(seen)}{log.read_text()[-4000:]}"
            )
            time.sleep(1)
    finally:
        stop_group(server, signal.SIGINT)
    assert not answers(url), f"{url} still answers after Ctrl-C"


@pytest.mark.slow
def test_readme_quickstart_runs(tmp_path):
    repo = tiny_project(tmp_path / "project")
    for kind, script in quickstart_blocks(README_TEXT):
        if kind == "quickstart-server":
            run_server_block(script, repo, tmp_path / "server.log")
            continue
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", PRELUDE + script],
            cwd=repo,
            env=project_env(repo),
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT_S,
        )
        assert done.returncode == 0, (
            f"{script}failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )
