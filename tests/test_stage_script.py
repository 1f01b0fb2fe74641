"""stage.run_script: a stage process ends with its objects frozen out of the shutdown's
garbage collections, and with the exit status, atexit handlers and output it had."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from vaelab.stage import run_script

PROBE = textwrap.dedent("""
    import atexit, gc, sys
    from vaelab.stage import run_script

    atexit.register(lambda: print("atexit ran, frozen", gc.get_freeze_count() > 0, flush=True))

    def main():
        print("frozen during main", gc.get_freeze_count() > 0, flush=True)
        if sys.argv[1] != "ok":
            raise SystemExit(int(sys.argv[1]))

    run_script(main)
""")


@pytest.mark.parametrize(("argv", "status"), [("ok", 0), ("2", 2), ("143", 143)])
def test_a_script_keeps_its_status_and_atexit_handlers_and_exits_frozen(
    argv: str, status: int
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, argv], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == status, done.stderr
    assert done.stdout.splitlines() == ["frozen during main False", "atexit ran, frozen True"]


def test_an_exception_goes_through_unchanged() -> None:
    import gc

    def main() -> None:
        raise ValueError("boom")

    try:
        with pytest.raises(ValueError, match="boom"):
            run_script(main)
    finally:
        gc.unfreeze()  # this test process goes on collecting
