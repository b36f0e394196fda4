"""The networks: EfficientNet B0-B7 and L2 with stochastic depth and dropout, small nets, a registry.

This package imports keras only (never tensorflow), so it runs on any Keras
backend: TensorFlow for CI and Beam, JAX on TPU/GPU hosts without TensorFlow.
"""

from model.registry import MODELS, build_model, count_params, get_spec, size_ratio

__all__ = ["MODELS", "build_model", "count_params", "get_spec", "size_ratio"]
