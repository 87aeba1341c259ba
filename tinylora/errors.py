"""The exceptions tinylora raises for bad input. Each message says what is wrong and how to fix it."""


class ModelError(ValueError):
    """A .tflite file that tinylora cannot read or does not support."""
