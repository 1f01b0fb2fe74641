"""DVC stage `chain` (study 000): a VAE's reconstructions through an AE, pass by pass."""

from vaelab.stage import run_script, stage_main

main = stage_main(__doc__, "vaelab.chain.chain:run_chain")

if __name__ == "__main__":
    run_script(main)
