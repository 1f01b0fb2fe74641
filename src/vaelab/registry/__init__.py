"""The model registry: the ``register`` stage, the MLflow pyfunc that serves vaelab
models, and the ``vaelab generate`` / ``vaelab reconstruct`` / ``vaelab promote`` commands.

- :mod:`.register`: the ``register`` stage;
- :mod:`.inputs`: what it reads from the pipeline's files, and the data and evaluation
  fingerprint made of it;
- :mod:`.runs`: the MLflow runs it writes to besides the versions (training runs, the
  compare run) and the models' and versions' descriptions;
- :mod:`.champion`: who may move ``champion`` and when, among which versions (peers);
- :mod:`.promote`: ``vaelab promote``, moving ``champion`` by hand;
- :mod:`.pyfunc`: the MLflow pyfuncs, and the vetting of a downloaded model before it runs;
- :mod:`.model_code`, :mod:`.decoder_code`: the files MLflow's models-from-code logs and
  runs, one per logged model;
- :mod:`.generate`: ``vaelab generate`` and ``vaelab reconstruct`` (and the CLI wiring of
  ``vaelab promote``);
- :mod:`.serve`: ``vaelab serve``, MLflow's scoring app behind a gate that refuses a request
  over ``registry.max_images`` before reading it, and params the model does not take;
- :mod:`.ui`: ``vaelab ui``, the MLflow UI over the project's store.

Nothing is imported here so that ``import vaelab.registry`` stays cheap: MLflow is
imported by the modules that need it (:mod:`.pyfunc`, :mod:`.register`, :mod:`.generate`).
"""
