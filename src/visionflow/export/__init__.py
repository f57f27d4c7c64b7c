"""Exporting a trained model as an immutable, verified, servable version.

  exportdir     the export base and its numbered versions; `signature.json` (the serving contract)
  graph         ServingGraph: what a version computes, preprocessing inside
  exporter      export_model: ONNX + weights + signature, published atomically
  verify        onnxruntime checked against PyTorch on real test images before publishing
"""
