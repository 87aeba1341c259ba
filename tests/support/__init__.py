"""Test-support code: random .tflite models and reference interpreters (oracles)."""
