"""`visionflow serve`: exported versions behind TensorFlow Serving's REST API and KServe's V2 protocol.

  rest_payloads   TF Serving request bodies (instances / inputs / examples) → pixel batches
  v2_tensors      Open Inference Protocol tensors (JSON and binary extension) → pixel batches
  images          pixel arrays and encoded images (PNG, JPEG, …) → model input, strictly checked
  runtime         onnxruntime (CPU) or PyTorch (CUDA) running one exported version
  batching        dynamic batching: concurrent requests merged into one runtime call
  versions        watching the export base, hot-swapping versions, labels and leases
  monitoring      Prometheus metrics
  core            what every endpoint shares: options, versions, bodies, errors, replies
  tfserving       the /v1 endpoints;  kserve: the /v2 endpoints (both built on core)
  app             the ASGI application: routes and lifespan
  server          uvicorn, banner;  transport: one write per reply;  client: `predict --server`

This package imports the export signature and graph, the model registry and the input contract,
never the training engine or the datasets, so a server starts without them.
"""
