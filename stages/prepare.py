"""DVC stage `prepare`: crop, resize and split into data/prepared/ and metrics/data.json."""

from vaelab.stage import stage_main

main = stage_main(__doc__, "vaelab.data.prepare:run_prepare")

if __name__ == "__main__":
    main()
