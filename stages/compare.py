"""DVC stage `compare`: metrics/compare.json, reports/compare.md and reports/compare/*.png."""

from vaelab.eval.compare import run_compare
from vaelab.stage import stage_main

main = stage_main(__doc__, run_compare)

if __name__ == "__main__":
    main()
