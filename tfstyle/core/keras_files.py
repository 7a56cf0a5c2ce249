"""Loading the package's Keras model files (`.keras`), with an error that says what is wrong:
a missing file (`FileNotFoundError`), one that exists but is damaged or is not the model it
should be (`ModelFileError`), each naming the file and what to do."""

from __future__ import annotations

import zipfile
from pathlib import Path


class ModelFileError(ValueError):
    """A model file that exists but cannot be loaded; the message names the file."""


def load_keras_file(path, what: str, remedy: str):
    """The Keras model saved at `path` ("a trained AtoB generator", ...). `remedy` says how to
    make one ("train with python -m train.cyclegan --model_dir=..."). Loading never fetches
    anything and runs no code from the file (Keras's safe mode)."""
    import keras
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: no {what} there ({remedy})")
    if not zipfile.is_zipfile(path):  # Keras itself would call it "file not found"
        raise ModelFileError(f"{path}: damaged (not a complete .keras file); {remedy}, or copy "
                             "the model directory anew")
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as err:  # noqa: BLE001  (any reason a file cannot become the model)
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelFileError(f"{path}: damaged or not {what} ({reason})") from err
