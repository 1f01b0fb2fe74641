"""What `dvc plots show` and `dvc metrics show` print: plots that draw offline and name what
they show, curves grouped so that one family shares axes and colours, and a metrics table
a person can read (at most ``TABLE_WIDTH`` characters on the default run)."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.support.project import run
from vaelab.compare.families import find_families
from vaelab.compare.history import curve_groups, write_history
from vaelab.config.loader import load_params
from vaelab.data.prepare import DATA_HEADLINE
from vaelab.io.json_files import write_json
from vaelab.io.metric_files import headline_of
from vaelab.measures import headline
from vaelab.train.train import TRAIN_HEADLINE

REPO = Path(__file__).resolve().parents[1]
DVC = [sys.executable, "-m", "dvc"]
CHROMIUM = next((p for n in ("chromium", "chromium-browser") if (p := shutil.which(n))), None)


def _plots_page() -> ModuleType:
    """``scripts/plots_page.py`` as a module (``scripts`` is no package)."""
    spec = importlib.util.spec_from_file_location("plots_page", REPO / "scripts" / "plots_page.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _curve(start: float, end: float, epochs: int, rng: np.random.Generator) -> np.ndarray:
    return end + (start - end) * np.exp(-np.arange(epochs) / 8) + rng.normal(0, 2, epochs)


def _default_repo(root: Path) -> tuple[Path, list[str]]:
    """A git + DVC repository with the project's dvc.yaml, params.yaml and DVC config (plot
    templates, page), and every file its plots read, written here rather than trained: per
    variant of the default params a history, the compare stage's grouped table, the chain's."""
    root.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy2(REPO / name, root / name)
    run(["git", "init", "-q"], root)
    run([*DVC, "init", "-q"], root)
    shutil.copytree(REPO / ".dvc" / "plots", root / ".dvc" / "plots", dirs_exist_ok=True)
    shutil.copy2(REPO / ".dvc" / "config", root / ".dvc" / "config")
    params = load_params(root / "params.yaml")
    rng = np.random.default_rng(0)
    histories = {}
    for name, config in params.models.items():
        epochs = 40 if name.startswith(("ae_pool", "ae_conv", "acc")) else 120
        gaussian = getattr(config, "recon_loss", "bce") == "gaussian"
        loss = _curve(900.0, -550.0, epochs, rng) if gaussian else _curve(715.0, 630.0, epochs, rng)
        history = pd.DataFrame(
            {"epoch": np.arange(1, epochs + 1), "train_loss": loss, "val_loss": loss}
        ).assign(train_recon=loss, val_recon=loss)
        (root / "metrics" / "history").mkdir(parents=True, exist_ok=True)
        history.to_csv(root / "metrics" / "history" / f"{name}.csv", index=False)
        histories[name] = history
    groups = curve_groups(params.models, find_families(params.models))
    write_history(histories, groups, root / "metrics" / "compare" / "history.csv")
    pd.DataFrame({"pass": [-1, 0, 1, 2], "laplacian_var": [0.004, 0.003, 0.01, 0.02]}).to_csv(
        root / "metrics" / "chain.csv", index=False
    )
    (root / "reports" / "compare").mkdir(parents=True)
    return root, list(params.models)


def test_every_plot_has_a_title_and_a_variants_plot_names_it():
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    for entry in pipeline["plots"]:
        ((name, plot),) = entry.items()
        assert plot["template"] == "families" and len(plot["title"]) > 20, name
    (history,) = [
        p for p in pipeline["stages"]["train"]["do"]["plots"] if "metrics/history/${key}.csv" in p
    ]
    assert history["metrics/history/${key}.csv"]["title"].startswith("${key}: ")
    (chain,) = pipeline["stages"]["chain"]["plots"]
    assert chain["metrics/chain.csv"]["title"]
    # The template: one panel per group, each with its own axes, colours and legend.
    template = json.loads((REPO / ".dvc" / "plots" / "families.json").read_text())
    assert template["facet"]["field"] == "family"
    assert template["resolve"]["scale"] == {
        "x": "independent",
        "y": "independent",
        "color": "independent",
    }
    assert template["spec"]["encoding"]["color"]["field"] == "variant"


def test_curve_groups_give_another_loss_scale_its_own_panel():
    params = load_params(REPO / "params.yaml")
    groups = curve_groups(params.models, find_families(params.models))
    titles = [g.title for g in groups]
    # The default VAE is in three sweeps on its scale; the recon_loss sweep crosses scales.
    assert sum("vae" in g.variants for g in groups) == 3
    assert not any(t.startswith("recon_loss") for t in titles)
    (sigma,) = [g for g in groups if "vae_sigma" in g.variants]
    assert sigma.variants == ("vae_sigma",) and "Gaussian NLL" in sigma.title
    assert {name for g in groups for name in g.variants} == set(params.models)
    assert max(len(g.variants) for g in groups) <= 10  # a colour each from category10
    (z_dim,) = [g for g in groups if g.title.startswith("z_dim")]
    assert z_dim.variants == ("vae_z4", "vae", "vae_z64")
    assert z_dim.title == "z_dim sweep, BCE: vae_z4 (4), vae (16), vae_z64 (64)"


def test_plots_page_inlines_vega_and_loads_nothing(tmp_path: Path):
    page = _plots_page()
    path = tmp_path / "page.html"
    assert page.main([str(path)]) == 0
    html = path.read_text()
    assert page.main([str(path), "--check"]) == 0
    # No <script src> at all, nothing loaded from a server, and no CDN anywhere.
    assert not re.search(r"<script[^>]+src=", html)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "cdn." not in html and "jsdelivr" not in html
    assert html.count("{plot_divs}") == 1 and "{scripts}" not in html
    assert "vegaEmbed" in html and "vegaLite" in html and len(html) > 500_000


def _page_requests(net_log: Path) -> list[str]:
    """The URLs that the page's own content requested, from Chromium's net log: a request
    the browser makes for itself (an update or time check) has no initiating origin."""
    log = json.loads(net_log.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [
        params["url"]
        for event in log["events"]
        if event["type"] == start
        and "url" in (params := event.get("params", {}))
        and params.get("initiator") != "not an origin"
    ]


def _dump_dom(html: Path, out: Path) -> str:
    """The DOM of ``html`` once its scripts ran, in headless Chromium with every network
    request refused (no proxy reachable, no host resolvable) and logged to ``out``."""
    done = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--proxy-server=socks5://127.0.0.1:9",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--log-net-log={out}",
            "--virtual-time-budget=20000",
            "--dump-dom",
            html.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary on PATH (apt-get install chromium; .ci/run does)"
)
def test_dvc_plots_show_draws_every_plot_offline_in_chromium(tmp_path: Path):
    repo, variants = _default_repo(tmp_path / "repo")
    assert _plots_page().main([str(repo / ".dvc" / "plots" / "page.html")]) == 0
    run([*DVC, "plots", "show"], repo)  # the plain command: .dvc/config names the page
    index = repo / "dvc_plots" / "index.html"
    html = index.read_text()
    assert "cdn.jsdelivr" not in html and not re.search(r"<script[^>]+src=", html)
    divs = re.findall(r'<div id = "([^"]+)">\s*<script', html)
    assert len(divs) == 2 + len(variants) + 1  # two charts of groups, one per variant, chain

    dom = _dump_dom(index, tmp_path / "net.json")
    for div in divs:
        start = dom.index(f'id="{div}"')
        block = dom[start : dom.index("</svg>", start)]
        assert 'data-drawn="ok"' in block[:200], (div, block[:300])
        lines = re.findall(r'<path[^>]*class="[^"]*mark-line[^>]*>|role-mark[^>]*mark-line', block)
        drawn = re.findall(r'aria-roledescription="line mark"[^>]*d="M[-0-9.]+,[-0-9.]+L', block)
        assert lines or drawn, div
    # Every title drew: each variant's name in its own chart, the groups' panels.
    for name in variants:
        assert f"{name}: validation loss per epoch" in dom
    assert "vae_sigma, Gaussian NLL" in dom and "z_dim sweep, BCE" in dom
    # The page asked for nothing: no script, data, image or font from anywhere.
    assert _page_requests(tmp_path / "net.json") == []


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH")
def test_the_request_log_sees_a_page_that_loads_from_a_cdn(tmp_path: Path):
    """The check above can fail: DVC's own page (Vega from a CDN) shows up in it."""
    page = tmp_path / "cdn.html"
    page.write_text('<script src="https://cdn.jsdelivr.net/npm/vega@5.20.2"></script>')
    _dump_dom(page, tmp_path / "net.json")
    assert _page_requests(tmp_path / "net.json") == ["https://cdn.jsdelivr.net/npm/vega@5.20.2"]


def _write_default_metrics(root: Path, variants: list[str]) -> None:
    """Every DVC metrics file of the default run, from the writers' own key tables, with
    values as wide as the default run's (13 variants, FID measured)."""
    detail = {
        "recon": {"mse": 0.015611308486945266, "psnr": 18.36, "ssim": 0.461},
        "blur": {"laplacian_var": {"recon": 0.0030558913952582426, "sample": 0.0033028850759}},
        "latent": {"active_units": 15.666666666666666},
        "elbo": -669.7335945638021,
        "inception": {"fid": {"sample": 123.45678901, "recon": 98.7654321}},
    }
    train = {"val": {"loss": -519.5573629, "recon": -546.1984723, "kl": 53.282219}}
    data = {"images": 202599, "skipped": {"count": 12}}
    metrics = root / "metrics"
    for name in variants:
        write_json(metrics / "eval" / f"{name}.json", headline_of(detail, headline.eval_headline()))
        write_json(metrics / "train" / f"{name}.json", headline_of(train, TRAIN_HEADLINE))
    write_json(metrics / "data.json", headline_of(data, DATA_HEADLINE))
    write_json(
        metrics / "chain.json", {headline.CHAIN_SHARP: 0.0281228, headline.CHAIN_MSE: 0.09536}
    )
    counts = (headline.CLAIMS_HOLD, headline.CLAIMS_AGAINST, headline.REMEDIES_BETTER)
    write_json(metrics / "compare.json", {**dict.fromkeys(counts, 4), headline.REMEDIES_WORSE: 1})


def test_dvc_metrics_show_of_the_default_run_fits_the_width(tmp_path: Path):
    repo, variants = _default_repo(tmp_path / "repo")
    _write_default_metrics(repo, variants)
    shown = run([*DVC, "metrics", "show"], repo).stdout
    rows = shown.splitlines()
    assert len(rows) == 1 + 2 * len(variants) + 3  # header, train and eval per variant, 3 more
    header = rows[0].split()
    assert header[0] == "Path" and "sharp" in header and "claims_hold" in header
    assert len(header) - 1 <= 16, header
    assert max(len(row) for row in rows) <= headline.TABLE_WIDTH, shown


# README's command after a one-knob experiment: the changed param and the evaluation metrics.
EXP_SHOW_DROP = (
    r"Created|^(data|models|reports|metrics)(/[^:]*)?$"
    r"|^(metrics/(train|chain)|val\.|claims_|remedies_)"
)


@pytest.mark.slow
def test_exp_show_after_a_one_knob_experiment_fits_the_width(tmp_path: Path):
    from tests.support.project import copy_project, small_pipeline

    repo = copy_project(tmp_path / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    small_pipeline(params, epochs=2, seeds=1)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run([*DVC, "repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "baseline"], repo)
    run([*DVC, "exp", "run", "-n", "z6", "-S", "models.small_vae.z_dim=6"], repo)
    shown = run([*DVC, "exp", "show", "--only-changed", "--drop", EXP_SHOW_DROP], repo).stdout
    assert "models.small_vae.z_dim" in shown and "metrics/eval/small_vae.json:sharp" in shown
    assert max(len(line) for line in shown.splitlines()) <= headline.TABLE_WIDTH, shown
    assert EXP_SHOW_DROP in (REPO / "README.md").read_text()
