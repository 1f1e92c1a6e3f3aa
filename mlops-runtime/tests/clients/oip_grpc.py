"""NVIDIA's tritonclient over gRPC against a server under test.

Usage: oip_grpc.py HOST:PORT TESTDATA_DIR

Runs the golden inputs of testdata/mlp and testdata/cnn and compares the outputs with the
golden outputs. Prints one JSON line of what was checked; exits non-zero on a mismatch.
"""

import json
import sys
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

url, testdata = sys.argv[1], Path(sys.argv[2])
checked = []

client = grpcclient.InferenceServerClient(url=url)
assert client.is_server_live() and client.is_server_ready()
for model in ["mlp", "cnn"]:
    assert client.is_model_ready(model), model
    meta = client.get_model_metadata(model, as_json=True)
    assert meta["name"] == model and meta["platform"] == "onnxruntime_onnx", meta
    config = client.get_model_config(model, as_json=True)["config"]
    assert config["name"] == model and config["max_batch_size"] == 32, config
    assert config["input"][0]["data_type"] == "TYPE_FP32", config
    checked.append(f"tritonclient grpc config {model}")
    g = json.loads((testdata / f"{model}.golden.json").read_text())
    inputs = []
    for t in g["inputs"]:
        i = grpcclient.InferInput(t["name"], t["shape"], "FP32")
        i.set_data_from_numpy(np.asarray(t["data"], dtype=np.float32).reshape(t["shape"]))
        inputs.append(i)
    outputs = [grpcclient.InferRequestedOutput(t["name"]) for t in g["outputs"]]
    res = client.infer(model, inputs, outputs=outputs, request_id="g-1")
    assert res.get_response().id == "g-1"
    for t in g["outputs"]:
        got = res.as_numpy(t["name"])
        want = np.asarray(t["data"], dtype=np.float32).reshape(t["shape"])
        if got is None or got.shape != want.shape or not np.allclose(got, want, atol=1e-4, rtol=1e-3):
            sys.exit(f"{model}/{t['name']}: got {None if got is None else got.ravel()[:4]}, want {want.ravel()[:4]}")
    checked.append(f"tritonclient grpc {model}")
try:
    client.infer("no_such_model", [grpcclient.InferInput("x", [1, 64], "FP32")])
    sys.exit("an unknown model did not fail")
except InferenceServerException as e:
    assert "no_such_model" in str(e), str(e)
    checked.append("tritonclient grpc error")
stats = client.get_inference_statistics("mlp", as_json=True)["model_stats"][0]
assert int(stats["inference_count"]) == 4 and int(stats["inference_stats"]["success"]["count"]) == 1, stats
checked.append("tritonclient grpc statistics")
print(json.dumps({"checked": checked}))
