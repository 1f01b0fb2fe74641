"""DVC stage `register`: every variant into the MLflow model registry, aliases moved, metrics/registry.json."""

from vaelab.stage import stage_main

main = stage_main(__doc__, "vaelab.registry.register:run_register")

if __name__ == "__main__":
    main()
