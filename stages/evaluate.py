"""DVC stage `evaluate@<variant>`: metrics/eval/<variant>.json and reports/<variant>/*.png."""

from vaelab.stage import run_script, stage_main

main = stage_main(__doc__, "vaelab.evaluate.evaluate:run_evaluate", per_variant=True)

if __name__ == "__main__":
    run_script(main)
