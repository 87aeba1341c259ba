"""The example model bundled with the package.

``digits_cnn.tflite`` is a small full-integer int8 CNN for the 8x8 digits
(``tinylora.datasets``); ``scripts/make_example_model.py`` regenerates it and
its metadata file ``digits_cnn.json``.
"""

from __future__ import annotations

import json
import pathlib
from importlib import resources

from tinylora.errors import ResourceError

__all__ = ["example_model", "example_info"]

_MODEL = "digits_cnn.tflite"
_INFO = "digits_cnn.json"


def _data_file(name: str) -> pathlib.Path:
    path = pathlib.Path(str(resources.files("tinylora") / "data" / name))
    if not path.is_file():
        raise ResourceError(
            f"{path} is missing; run scripts/make_example_model.py to regenerate it"
        )
    return path


def example_model() -> pathlib.Path:
    """Path of the bundled int8 digits CNN (``digits_cnn.tflite``)."""
    return _data_file(_MODEL)


def example_info() -> dict:
    """Metadata of the bundled model: accuracies, sha256, ops, versions."""
    return json.loads(_data_file(_INFO).read_text())
