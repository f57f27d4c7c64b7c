"""Interoperability check: the real TensorFlow Serving client against `visionflow serve`'s gRPC port.

Run in an environment with TensorFlow and `tensorflow-serving-api` (their generated stubs, not
ours), against a server of a model of 8×8 greyscale images (the embedded digits) started with
`visionflow serve ... --grpc-port N`:

    python bench/tfserving_client.py 127.0.0.1:8500 MODEL_NAME

Checks Predict (uint8 from tf.make_tensor_proto, then floats 0–1: the same classes), Classify (a
tf.train.Example holding a PNG from tf.io.encode_png: the same top class as Predict),
GetModelMetadata (the SignatureDefMap unpacked from its Any), ModelService.GetModelStatus, and a
tensor whose tensor_content
is one byte short (INVALID_ARGUMENT).  Prints what it saw; exits non-zero on a mismatch.
"""

from __future__ import annotations

import sys

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc)


def main(target: str, name: str) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(target))
    images = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 1), dtype=np.uint8)

    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = name, "serving_default"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
    reply = stub.Predict(request, timeout=10)
    probabilities = tf.make_ndarray(reply.outputs["probabilities"])
    classes = tf.make_ndarray(reply.outputs["classes"])
    print(f"Predict uint8: probabilities {probabilities.shape}, classes {classes.tolist()}, "
          f"version {reply.model_spec.version.value}")
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(images.astype(np.float32) / 255.0))
    as_floats = tf.make_ndarray(stub.Predict(request, timeout=10).outputs["classes"])
    print(f"Predict float 0-1: classes {as_floats.tolist()}")
    assert as_floats.tolist() == classes.tolist()

    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = name
    example = classify.input.example_list.examples.add()
    example.features.feature["images"].bytes_list.value.append(tf.io.encode_png(images[0]).numpy())
    ranked = stub.Classify(classify, timeout=10).result.classifications[0].classes
    print(f"Classify PNG: {[(c.label, round(c.score, 3)) for c in ranked[:3]]}")
    assert ranked[0].label == str(classes[0])

    metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    metadata.model_spec.name = name
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert stub.GetModelMetadata(metadata, timeout=10).metadata["signature_def"].Unpack(signatures)
    default = signatures.signature_def["serving_default"]
    print(f"GetModelMetadata: input dtype {tf.dtypes.as_dtype(default.inputs['images'].dtype).name}, "
          f"outputs {sorted(default.outputs)}")

    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = name
    channel = grpc.insecure_channel(target)
    versions = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status, timeout=10).model_version_status
    print(f"GetModelStatus: {[(v.version, get_model_status_pb2.ModelVersionStatus.State.Name(v.state)) for v in versions]}")
    assert any(v.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE for v in versions)

    short = tf.make_tensor_proto(images)
    short.tensor_content = short.tensor_content[:-1]
    request.inputs["images"].CopyFrom(short)
    try:
        stub.Predict(request, timeout=10)
        raise AssertionError("a short tensor_content was accepted")
    except grpc.RpcError as e:
        print(f"short tensor_content: {e.code().name} {e.details()}")
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT


if __name__ == "__main__":
    main(*sys.argv[1:3])
