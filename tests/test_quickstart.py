"""The README's quick start, run as written: every shell block marked ```` ```bash quickstart ````
runs in order, on a temporary copy of the project with tiny params after one `dvc repro` (what
`make repro` leaves), and must exit 0. A block marked ```` ```bash quickstart-server ```` starts a
server: it must print an http:// URL that answers, and is then stopped. The two set-up commands
(`make repro`, `make test`) are left unmarked: CI runs them."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.support.project import REPO, copy_project, project_env, run, small_pipeline

BLOCK = re.compile(r"^```bash (quickstart(?:-server)?)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
URL = re.compile(r"http://[\w.:-]+/?")
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


def run_server_block(script: str, repo: Path) -> None:
    """Start ``script``, wait for the URL it prints, GET it, stop the whole process group."""
    server = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", PRELUDE + script],
        cwd=repo,
        env=project_env(repo),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + SERVER_DEADLINE_S
        seen = ""
        while (match := URL.search(seen)) is None:
            assert time.monotonic() < deadline and server.poll() is None, f"no URL:\n{seen}"
            seen += server.stdout.readline()  # type: ignore[union-attr]
        while True:
            try:
                with urllib.request.urlopen(match.group(0), timeout=5) as answer:
                    assert answer.status == 200
                    return
            except OSError:
                assert time.monotonic() < deadline, f"{match.group(0)} never answered"
                time.sleep(1)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.mark.slow
def test_readme_quickstart_runs(tmp_path):
    repo = tiny_project(tmp_path / "project")
    for kind, script in quickstart_blocks(README_TEXT):
        if kind == "quickstart-server":
            run_server_block(script, repo)
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
