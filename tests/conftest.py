"""Shared test configuration: deterministic hypothesis, shared fixtures."""
import os
import pathlib
import sys

import pytest
from hypothesis import HealthCheck, settings

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

# Tests are deterministic everywhere: hypothesis derives its examples from the test itself.
settings.register_profile("default", derandomize=True, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", derandomize=False, deadline=None, max_examples=2000)
settings.load_profile(os.environ.get("TINYLORA_HYPOTHESIS_PROFILE", "default"))

# The optimised libraries' unmodified sources (tinylora.targets.LIBRARIES): the repository's
# sibling ../shared/third_party (CI), else the machine's shared copy, unless already set.
for _var, _folder in (("CMSIS_NN_DIR", "CMSIS-NN"), ("ESP_NN_DIR", "esp-nn")):
    for _base in (ROOT.parent / "shared" / "third_party", pathlib.Path("/work/shared/third_party")):
        if not os.environ.get(_var) and (_base / _folder).is_dir():
            os.environ[_var] = str(_base / _folder)


@pytest.fixture(scope="session")
def example_bytes():
    import tinylora
    return tinylora.example_model().read_bytes()


@pytest.fixture(scope="session")
def model(example_bytes):
    """The bundled digits CNN as a Model."""
    import tinylora
    return tinylora.load_tflite(example_bytes)
