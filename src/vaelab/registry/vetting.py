"""Vet a downloaded MLflow model before anything of it runs: only vaelab's own pyfuncs load.

Loading an MLflow pyfunc runs code the model brings: a pickled ``PythonModel`` is
unpickled (which can call anything), a models-from-code model executes its shipped
``.py`` file, ``code_paths`` put the model's folders first on ``sys.path``, and another
flavour's ``loader_module`` runs its own loader (often unpickling too). On a shared
tracking server anyone who can log a model can name it ``vaelab-<variant>``. So before
``mlflow.pyfunc.load_model`` the commands read the model's ``MLmodel`` and accept only
what vaelab's ``register`` writes:

- the one flavour ``python_function``, with MLflow's models-from-code loader;
- a code file byte-identical to one of vaelab's installed model files
  (:mod:`.model_code`, :mod:`.decoder_code`), so the code that runs is the installed code;
- no ``code`` paths, no pickled ``python_model``;
- exactly the ``weights`` (``model.pt``, loaded ``weights_only``) and ``config`` (JSON)
  artifacts, inside the model's folder.

Anything else is a :class:`UserError` saying what was found; nothing of the model has run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from vaelab.errors import UserError

CODE_LOADER = "mlflow.pyfunc.loaders.code_model"
PYFUNC = "python_function"
# The files register logs as models-from-code, next to this module.
TRUSTED_CODE = ("model_code.py", "decoder_code.py")
ARTIFACT_FILES = {"weights": "model.pt", "config": "config.json"}


def _refuse(ref: str, why: str) -> UserError:
    return UserError(
        f"--model {ref}: refused before loading: {why}; vaelab loads only the models its "
        "`register` stage logs (a vaelab models-from-code pyfunc with weights-only artifacts)"
    )


def _read_mlmodel(folder: Path, ref: str) -> dict[str, Any]:
    path = folder / "MLmodel"
    if not path.is_file():
        raise _refuse(ref, "it has no MLmodel file")
    try:
        content = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise _refuse(ref, f"its MLmodel file is not YAML ({err})") from err
    if not isinstance(content, dict):
        raise _refuse(ref, "its MLmodel file is not a mapping")
    return content


def _inside(folder: Path, relative: Any) -> Path | None:
    """``folder / relative`` when that is a file inside ``folder`` (no ``..``, no absolute path, no link out)."""
    if not isinstance(relative, str) or not relative:
        return None
    root = folder.resolve()
    target = (folder / relative).resolve()
    return target if target.is_file() and target.is_relative_to(root) else None


def vet_model_folder(folder: Path, ref: str) -> None:
    """Raise :class:`UserError` unless ``folder`` (a downloaded MLflow model) is a vaelab pyfunc."""
    mlmodel = _read_mlmodel(folder, ref)
    flavors = mlmodel.get("flavors")
    if not isinstance(flavors, dict) or set(flavors) != {PYFUNC}:
        names = ", ".join(sorted(flavors)) if isinstance(flavors, dict) else "none"
        raise _refuse(ref, f"its flavours are {names}, not only {PYFUNC}")
    pyfunc = flavors[PYFUNC]
    if not isinstance(pyfunc, dict):
        raise _refuse(ref, f"its {PYFUNC} flavour is not a mapping")
    loader = pyfunc.get("loader_module")
    if loader != CODE_LOADER:
        kind = "a pickled python model" if "python_model" in pyfunc else f"loader {loader!r}"
        raise _refuse(ref, f"it is {kind}, not a models-from-code pyfunc ({CODE_LOADER})")
    if pyfunc.get("python_model") is not None:
        raise _refuse(ref, "it carries a pickled python_model")
    if pyfunc.get("code"):
        raise _refuse(
            ref, f"it ships code paths ({pyfunc['code']!r}) that would go first on sys.path"
        )

    code_path = pyfunc.get("model_code_path")
    name = Path(code_path).name if isinstance(code_path, str) else ""
    shipped = _inside(folder, name) if name in TRUSTED_CODE else None
    if shipped is None:
        raise _refuse(
            ref, f"its model code {code_path!r} is not one of vaelab's ({', '.join(TRUSTED_CODE)})"
        )
    installed = Path(__file__).with_name(name)
    if shipped.read_bytes() != installed.read_bytes():
        raise _refuse(ref, f"its {name} differs from the installed vaelab's {installed}")

    artifacts = pyfunc.get("artifacts")
    if not isinstance(artifacts, dict) or set(artifacts) != set(ARTIFACT_FILES):
        found = ", ".join(sorted(artifacts)) if isinstance(artifacts, dict) else "none"
        raise _refuse(ref, f"its artifacts are {found}, not {', '.join(sorted(ARTIFACT_FILES))}")
    for key, filename in ARTIFACT_FILES.items():
        entry = artifacts[key]
        relative = entry.get("path") if isinstance(entry, dict) else None
        if _inside(folder, relative) is None or Path(relative).name != filename:
            raise _refuse(
                ref, f"its {key} artifact {relative!r} is not a {filename} inside the model"
            )
