"""Prometheus metrics, served at TF Serving's path `/monitoring/prometheus/metrics`.

Per model and version: requests by API and status code, errors, request latency, and — per
runtime call — batch sizes and inference time, so dynamic batching can be seen working.  A
private registry keeps several servers in one process (tests) from sharing counters.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

#: Every value the `api` label takes: a closed set, so no request can grow the metrics page.
APIS = frozenset({"tfs_predict", "tfs_classify", "tfs_regress", "tfs_unknown", "tfs_metadata", "tfs_status",
                  "v2_server_metadata", "v2_live", "v2_ready", "v2_infer", "v2_model_ready", "v2_model_metadata",
                  "metrics", "other", "grpc_predict", "grpc_classify", "grpc_metadata", "grpc_status", "grpc_other",
                  "grpc_v2_live", "grpc_v2_ready", "grpc_v2_server_metadata", "grpc_v2_model_ready",
                  "grpc_v2_model_metadata", "grpc_v2_infer"})

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServingMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["model", "version", "api", "code"]
        self.requests = Counter("visionflow_requests", "Requests answered, by model, version, API and HTTP status",
                                labels, registry=self.registry)
        self.errors = Counter("visionflow_request_errors", "Requests answered with a 4xx or 5xx status",
                              labels, registry=self.registry)
        self.latency = Histogram("visionflow_request_latency_seconds", "Time from request start to reply",
                                 ["model", "version", "api"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("visionflow_batch_size", "Images per runtime call (dynamic batching)",
                                    ["model", "version"], buckets=BATCH_BUCKETS, registry=self.registry)
        self.inference = Histogram("visionflow_inference_seconds", "Duration of one runtime call",
                                   ["model", "version"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.available = Gauge("visionflow_model_version_available", "1 while a version is serving",
                               ["model", "version"], registry=self.registry)
        self.load_failures = Counter("visionflow_model_version_load_failures",
                                     "Versions that failed to load or warm up", ["model"], registry=self.registry)
        self._request_children: dict[tuple, tuple] = {}
        self._batch_children: dict[tuple, tuple] = {}

    def observe_request(self, model: str, version: str, api: str, code: int, seconds: float) -> None:
        """Count one reply.  `model` and `version` are the served name and a loaded version (or "")."""
        if api not in APIS:
            api = "other"
        key = (model, version, api, code)
        children = self._request_children.get(key)
        if children is None:  # labels() validates and locks: do it once per label set, not per request
            labels = (model, version, api, str(code))
            children = (self.requests.labels(*labels), self.errors.labels(*labels) if code >= 400 else None,
                        self.latency.labels(model, version, api))
            self._request_children[key] = children
        requests, errors, latency = children
        requests.inc()
        if errors is not None:
            errors.inc()
        latency.observe(seconds)

    def observe_batch(self, model: str, version: int, size: int, seconds: float) -> None:
        key = (model, version)
        children = self._batch_children.get(key)
        if children is None:
            children = (self.batch_size.labels(model, str(version)), self.inference.labels(model, str(version)))
            self._batch_children[key] = children
        children[0].observe(size)
        children[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
