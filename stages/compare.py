"""DVC stage `compare`: metrics/compare.json, reports/compare.md and reports/compare/*.png."""

from vaelab.stage import run_script, stage_main

main = stage_main(__doc__, "vaelab.compare.compare:run_compare")

if __name__ == "__main__":
    run_script(main)
