"""`vaelab report`: one Markdown page comparing the workspace with a git revision.

It gathers what `dvc params diff` and `dvc metrics diff` show, the comparison
figures of both sides and a sharper/blurrier verdict per variant that counts only a
change larger than the measured noise (:mod:`vaelab.prdiff.sharpness`), so that a pull
request's effect can be read in one comment. The old side is a git revision, or a
checkout of it reproduced on the same machine (``--base-dir``, :mod:`vaelab.prdiff.worktree`).
"""

from vaelab.prdiff.build import build_report

__all__ = ["build_report"]
