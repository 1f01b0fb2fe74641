"""DVC stage `prepare`: crop, resize and split into data/prepared/ and metrics/data.json."""

from vaelab.stage import run_script, stage_main

main = stage_main(__doc__, "vaelab.data.prepare:run_prepare")

if __name__ == "__main__":
    run_script(main)
