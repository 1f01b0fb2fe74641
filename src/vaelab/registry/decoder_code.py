"""The file MLflow's models-from-code logs and runs to build the decoder pyfunc.

Like :mod:`.model_code`: ``set_model`` on import hands MLflow the object, so no vaelab
module imports this file; only MLflow runs it.
"""

from mlflow.models import set_model

from vaelab.registry.pyfunc import VaelabDecoder

set_model(VaelabDecoder())
