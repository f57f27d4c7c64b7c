"""The `visionflow` command line: one module per command group, over the same engine as the API.

  main       the parser and exit codes;  common: shared flags
  train      train, retrain;  evaluate: evaluate;  predict: predict, label-image, classify-image
  board      TensorBoard;  serve: export, serve;  data: convert
"""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
