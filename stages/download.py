"""DVC stage `download`: fetch data.dataset into data/raw/<dataset>/ with a MANIFEST.json."""

from vaelab.stage import run_script, stage_main

main = stage_main(__doc__, "vaelab.data.download:run_download")

if __name__ == "__main__":
    run_script(main)
