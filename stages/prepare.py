"""DVC stage `prepare`: crop, resize and split into data/prepared/ and metrics/data.json."""

from vaelab.data.prepare import run_prepare
from vaelab.stage import stage_main

main = stage_main(__doc__, run_prepare)

if __name__ == "__main__":
    main()
