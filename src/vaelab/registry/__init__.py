"""The model registry: the ``register`` stage, the MLflow pyfunc that serves vaelab
models, and the ``vaelab generate`` / ``vaelab reconstruct`` commands.

Nothing is imported here so that ``import vaelab.registry`` stays cheap: MLflow is
imported by the modules that need it (:mod:`.pyfunc`, :mod:`.register`, :mod:`.commands`).
"""
