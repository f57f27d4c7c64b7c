"""Keras-style layers and models on torch (the face with compile/fit is `visionflow.keras`).

  core      Layer, KerasTensor, Input, automatic names
  ops       named activations and initializers, TensorFlow's "same" padding
  layers    the built-in layers
  network   Network (functional graphs and subclassed models), Stack (Sequential), their config
  summary   model.summary()'s table
  serving   the registered model "keras": a saved architecture rebuilt for export and serving
"""
