"""The file MLflow's models-from-code logs and runs to build the pyfunc (``python_model=``).

MLflow copies this file into the logged model and executes it at load time; the call
to ``set_model`` is how it hands MLflow the model object. That is a side effect on
import, so no vaelab module imports this file: it is only ever run by MLflow.
"""

from mlflow.models import set_model

from vaelab.registry.pyfunc import VaelabPyfunc

set_model(VaelabPyfunc())
