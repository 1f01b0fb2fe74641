"""DVC stage `register`: every variant into the MLflow model registry, aliases moved, metrics/registry.json."""

from vaelab.registry.register import run_register
from vaelab.stage import stage_main

main = stage_main(__doc__, run_register)

if __name__ == "__main__":
    main()
