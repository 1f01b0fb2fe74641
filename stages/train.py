"""DVC stage `train@<variant>`: train one variant of params.yaml models: into models/<variant>/."""

from vaelab.stage import run_script, stage_main

main = stage_main(
    __doc__,
    "vaelab.train.train:run_train",
    per_variant=True,
    # A finished training (complete checkpoints, same inputs): its kept outputs put back.
    done="vaelab.train.finished:restore",
    # train.processes > 1: this process starts torchrun with the ranks and waits for them.
    relaunch="vaelab.train.launch:relaunch",
)

if __name__ == "__main__":
    run_script(main)
