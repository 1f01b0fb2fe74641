"""DVC stage `register`: every variant into the MLflow model registry, aliases moved,
metrics/registry.json."""

from vaelab.stage import run_script, stage_main

main = stage_main(__doc__, "vaelab.registry.register:run_register")

if __name__ == "__main__":
    run_script(main)
