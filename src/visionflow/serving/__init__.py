"""`visionflow serve`: exported versions behind TensorFlow Serving's REST API and KServe's V2 protocol.

  rest_payloads   TF Serving request bodies (instances / inputs / examples) → pixel batches
  v2_tensors      Open Inference Protocol tensors (JSON and binary extension) → pixel batches
  images          pixel arrays and encoded images (PNG, JPEG, …) → model input, strictly checked
  runtime         onnxruntime (CPU) or PyTorch (CUDA) running one exported version
  batching        dynamic batching: concurrent requests merged into one runtime call
  versions        watching the export base, hot-swapping versions, labels and leases
  monitoring      Prometheus metrics
  tfserving       the /v1 endpoints;  kserve: the /v2 endpoints
  app             the ASGI application;  server: uvicorn, banner;  client: `predict --server`
"""

DEFAULT_MAX_BODY_BYTES = 16 * 2**20  # here, not in app.py, so the CLI can show it without importing starlette
