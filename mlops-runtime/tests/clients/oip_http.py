"""Real Open Inference Protocol clients against a server under test.

Usage: oip_http.py HOST:PORT TESTDATA_DIR

NVIDIA's tritonclient (HTTP, with JSON and with binary tensors) and a plain HTTP client
(urllib, JSON) each run the golden inputs of testdata/mlp and testdata/cnn and compare the
outputs with the golden outputs. Prints one JSON line of what was checked; exits non-zero
on the first mismatch.
"""

import json
import sys
import urllib.request
from pathlib import Path

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

url, testdata = sys.argv[1], Path(sys.argv[2])
checked = []


def golden(model):
    g = json.loads((testdata / f"{model}.golden.json").read_text())
    def arr(t):
        return np.asarray(t["data"], dtype=np.float32).reshape(t["shape"])
    return {t["name"]: arr(t) for t in g["inputs"]}, {t["name"]: arr(t) for t in g["outputs"]}


def close(model, name, got, want):
    if got.shape != want.shape or not np.allclose(got, want, atol=1e-4, rtol=1e-3):
        sys.exit(f"{model}/{name}: got {got.ravel()[:4]}... shape {got.shape}, want {want.ravel()[:4]}... shape {want.shape}")


client = httpclient.InferenceServerClient(url=url)
assert client.is_server_live() and client.is_server_ready(), "server not live/ready"
for model in ["mlp", "cnn"]:
    assert client.is_model_ready(model), f"{model} not ready"
    meta = client.get_model_metadata(model)
    config = client.get_model_config(model)
    assert meta["name"] == model and config["max_batch_size"] > 0, (meta, config)
    inputs, outputs = golden(model)
    for binary in (False, True):
        req = []
        for name, value in inputs.items():
            i = httpclient.InferInput(name, list(value.shape), "FP32")
            i.set_data_from_numpy(value, binary_data=binary)
            req.append(i)
        want = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in outputs]
        res = client.infer(model, req, outputs=want, request_id="tc-1")
        assert res.get_response()["id"] == "tc-1"
        for name, value in outputs.items():
            close(model, name, res.as_numpy(name), value)
        checked.append(f"tritonclient http {model} binary={str(binary).lower()}")

    # Plain HTTP, JSON both ways.
    body = {"inputs": [{"name": n, "datatype": "FP32", "shape": list(v.shape), "data": v.ravel().tolist()}
                       for n, v in inputs.items()]}
    req = urllib.request.Request(f"http://{url}/v2/models/{model}/infer", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        answer = json.loads(resp.read())
    for o in answer["outputs"]:
        close(model, o["name"], np.asarray(o["data"], dtype=np.float32).reshape(o["shape"]), outputs[o["name"]])
    checked.append(f"urllib {model}")

# Errors reach tritonclient as exceptions carrying the server's message.
try:
    client.infer("no_such_model", [httpclient.InferInput("x", [1, 64], "FP32")])
    sys.exit("an unknown model did not fail")
except InferenceServerException as e:
    assert "no_such_model" in str(e), str(e)
    checked.append("tritonclient error")
stats = client.get_inference_statistics("mlp")
assert stats["model_stats"][0]["inference_count"] >= 8, stats
checked.append("tritonclient statistics")
print(json.dumps({"checked": checked}))
