"""The exceptions tinylora raises for bad input. Each message says what is wrong and how to fix it."""


class ModelError(ValueError):
    """A .tflite file that tinylora cannot read or does not support."""


class ConfigError(ValueError):
    """A LoRA or trainer setting that cannot work with this model."""


class BudgetError(ValueError):
    """A training step that does not fit the RAM budget; ``plan`` is the plan that did not fit."""

    def __init__(self, message: str, plan=None):
        super().__init__(message)
        self.plan = plan


class CheckpointError(ValueError):
    """A checkpoint that is damaged, torn, foreign (another model or config) or missing."""
