"""Write the HTML page ``dvc plots show`` fills: Vega, Vega-Lite and vega-embed inlined, so the
plots draw with no network (DVC's own page loads them from a CDN and stays blank offline).

The JavaScript is vl-convert-python's self-contained bundle (pinned in constraints.txt), so
the page is made from the installed package, not committed: ``make install`` runs

    python scripts/plots_page.py            # writes .dvc/plots/page.html

and ``.dvc/config`` names it (``plots.html_template``), so the plain ``dvc plots show`` uses
it. ``--check`` exits 1 when the page is missing or differs from what would be written.

Each plot is drawn as SVG (a page a browser test can read), and its ``<div>`` gets
``data-drawn="ok"`` or ``data-drawn="error: ..."`` once vega-embed is done with it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import vl_convert

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / ".dvc" / "plots" / "page.html"
# The Vega-Lite major version of DVC's templates and ours ("$schema": vega-lite/v5.json).
VEGA_LITE = "5.21"
# The placeholders dvc_render fills by plain text replacement; "{scripts}" (DVC's CDN <script>
# tags) is left out on purpose.
PLOT_DIVS, REFRESH = "{plot_divs}", "{refresh_tag}"

# Every vegaEmbed call in DVC's plot <div>s goes through this: SVG, no link to the online
# editor, and a mark on the <div> once drawn (or why not).
EMBED = """
(function () {
  var embed = window.vegaEmbed;
  var options = {renderer: "svg", actions: {export: true, source: true, compiled: true,
                                             editor: false}};
  window.vegaEmbed = function (target, spec, opts) {
    var node = document.querySelector(target);
    return embed(target, spec, Object.assign({}, options, opts)).then(
      function (result) { node.setAttribute("data-drawn", "ok"); return result; },
      function (error) { node.setAttribute("data-drawn", "error: " + error); throw error; });
  };
})();
"""

STYLE = """
body { font-family: sans-serif; margin: 1em 2em; }
body > div { margin-bottom: 2em; }
table { border-spacing: 15px; }
"""


def page_html() -> str:
    """The page: the bundle and the embed wrapper inlined, DVC's two placeholders."""
    bundle = vl_convert.javascript_bundle(vl_version=VEGA_LITE)
    for text in (PLOT_DIVS, REFRESH, "{scripts}", "</script"):
        if text in bundle:
            raise ValueError(f"the JavaScript bundle holds {text!r}: it cannot be inlined as is")
    versions = (
        f"Vega {vl_convert.get_vega_version()}, Vega-Lite {VEGA_LITE}, "
        f"vega-embed {vl_convert.get_vega_embed_version()}"
    )
    return (
        "<!DOCTYPE html>\n<html>\n<head>\n"
        f'<meta charset="utf-8">\n{REFRESH}\n<title>vaelab: DVC plots</title>\n'
        f"<!-- Written by scripts/plots_page.py: {versions}, bundled by vl-convert-python "
        "(no network needed). -->\n"
        f"<script>\n{bundle}\n</script>\n<script>{EMBED}</script>\n"
        f"<style>{STYLE}</style>\n</head>\n<body>\n{PLOT_DIVS}\n</body>\n</html>\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", nargs="?", type=Path, default=PAGE, help=f"default {PAGE}")
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is stale")
    args = parser.parse_args(argv)
    html = page_html()
    if args.check:
        current = args.path.read_text(encoding="utf-8") if args.path.is_file() else None
        if current != html:
            print(f"{args.path} is missing or stale: run python scripts/plots_page.py")
            return 1
        return 0
    args.path.parent.mkdir(parents=True, exist_ok=True)
    partial = args.path.with_name(args.path.name + ".partial")
    partial.write_text(html, encoding="utf-8")
    partial.replace(args.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
