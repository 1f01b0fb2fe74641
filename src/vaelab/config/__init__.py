"""params.yaml -> validated pydantic models -> typed objects."""

from vaelab.config.data_config import DataConfig
from vaelab.config.loader import load_params, params_from_dict
from vaelab.config.params import Params

__all__ = ["DataConfig", "Params", "load_params", "params_from_dict"]
