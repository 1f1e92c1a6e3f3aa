"""Generate the model fixtures in this folder (see README.md).

Run through generate.sh so the pinned versions in requirements.txt are used:
the bytes of the ONNX, safetensors and golden files depend on them.
All weights and inputs come from fixed numpy seeds, so re-running gives
byte-identical ONNX / safetensors / golden JSON / TensorFlow graph files.
These differ on every run, which is expected: MLflow's MLmodel (uuid, time)
TensorFlow's fingerprint.pb, and
mlp.torchscript.pt (a per-save serialization_id).
No fixture records where it was generated: TorchScript debug info, exporter
stack traces and pickled code locations are stripped or neutralised.
"""

import os

# Set before the ML imports: keep everything on CPU (results must not depend
# on a GPU being present) and stop MLflow from trying to send telemetry.
os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import copy
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import torch

# torch._dynamo (used by torch.onnx.export) loads triton, which bundles its own
# LLVM. Loading it after TensorFlow's LLVM aborts the process with "LLVM ERROR:
# inconsistency in registered CommandLine options", so load it first.
import torch._dynamo  # noqa: F401
import tensorflow as tf
import yaml
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file, save_file

import mlflow.onnx
import mlflow.pyfunc
from mlflow.models import ModelSignature
from mlflow.types.schema import ColSpec, Schema, TensorSpec

OUT = Path(__file__).resolve().parent
BAD = OUT / "bad"

ONNX_OPSET = 17
ONNX_IR_VERSION = 8
# The torch.export-based exporter (the default since torch 2.9) targets opset 18+.
TORCH_EXPORT_OPSET = 18
PRODUCER = "mlops-testdata"


# --------------------------------------------------------------------------- helpers


def uniform(rng, shape, fan_in):
    """Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), the usual default layer init."""
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


def oip_tensor(name, arr):
    """One tensor in Open Inference Protocol (KServe v2) JSON form."""
    datatype = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64", np.dtype(np.bool_): "BOOL"}
    # tolist() turns float32 into the exactly-equal Python float, so no precision is lost.
    return {"name": name, "datatype": datatype[arr.dtype], "shape": list(arr.shape), "data": arr.reshape(-1).tolist()}


def write_golden(path, model, inputs, outputs, signature=None):
    """Indented JSON with one tensor per line (one number per line would triple the size)."""
    head = {"model": model} if signature is None else {"model": model, "signature": signature}
    lines = ["{"] + [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    for key, tensors in (("inputs", inputs), ("outputs", outputs)):
        rows = ",\n".join("    " + json.dumps(oip_tensor(k, v)) for k, v in tensors.items())
        lines.append(f'  "{key}": [\n{rows}\n  ]' + ("," if key == "inputs" else ""))
    lines.append("}")
    text = "\n".join(lines) + "\n"
    json.loads(text)  # must stay valid JSON
    path.write_text(text)


def ort_run(path, feeds):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def onnx_model(name, nodes, inputs, outputs, weights):
    graph = helper.make_graph(
        nodes, name, inputs, outputs, initializer=[numpy_helper.from_array(v, k) for k, v in weights.items()]
    )
    model = helper.make_model(
        graph,
        producer_name=PRODUCER,
        opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
        ir_version=ONNX_IR_VERSION,
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def sort_safetensors_metadata(path):
    """safetensors keeps __metadata__ in a Rust HashMap, so its key order (and the
    file's bytes) change from run to run. Rewrite the header with sorted keys; the
    length stays the same, so the tensor data does not move."""
    raw = bytearray(path.read_bytes())
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    assert len(text) <= n, (len(text), n)
    raw[8 : 8 + n] = text.ljust(n, b" ")  # the format pads the header with spaces
    path.write_bytes(bytes(raw))


def fresh_dir(path):
    """Savers either refuse (MLflow) or merge into (TF) an existing folder."""
    shutil.rmtree(path, ignore_errors=True)
    return path


def dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


# --------------------------------------------------------------------------- MLP


def mlp_weights():
    rng = np.random.default_rng(1)
    return {
        "fc1.weight": uniform(rng, (128, 64), 64),
        "fc1.bias": uniform(rng, (128,), 64),
        "fc2.weight": uniform(rng, (16, 128), 128),
        "fc2.bias": uniform(rng, (16,), 128),
    }


def build_mlp_onnx(w):
    nodes = [
        helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["fc1_out"], name="fc1", transB=1),
        helper.make_node("Relu", ["fc1_out"], ["relu_out"], name="relu"),
        helper.make_node("Gemm", ["relu_out", "fc2.weight", "fc2.bias"], ["y"], name="fc2", transB=1),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16])
    return onnx_model("mlp", nodes, [x], [y], w)


class TorchMLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(64, 128)
        self.fc2 = torch.nn.Linear(128, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def strip_torchscript_debug_info(path):
    """Drop the *.debug_pkl members, which record this script's absolute path and
    source lines; TorchScript loads without them."""
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            if not info.filename.endswith(".debug_pkl"):
                dst.writestr(info, src.read(info.filename))
    tmp.replace(path)


def make_mlp():
    w = mlp_weights()
    model = build_mlp_onnx(w)
    onnx.save_model(model, OUT / "mlp.onnx")

    # The same model with its weights in an external data file, as large models ship.
    ext = fresh_dir(OUT / "mlp_external")
    ext.mkdir()
    # save_model moves the weights out of the proto it is given: save a copy.
    onnx.save_model(
        copy.deepcopy(model),
        ext / "model.onnx",
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    y_ext = ort_run(ext / "model.onnx", {"x": np.ones((1, 64), np.float32)})["y"]
    y_int = ort_run(OUT / "mlp.onnx", {"x": np.ones((1, 64), np.float32)})["y"]
    assert np.array_equal(y_ext, y_int)

    save_file(
        w,
        OUT / "mlp.safetensors",
        metadata={"architecture": "mlp", "activation": "relu", "layers": "64,128,16", "input": "x", "output": "y"},
    )
    sort_safetensors_metadata(OUT / "mlp.safetensors")

    x = np.random.default_rng(2).standard_normal((4, 64)).astype(np.float32)
    y = ort_run(OUT / "mlp.onnx", {"x": x})["y"]
    # Independent check: plain numpy with the weights read back from the safetensors file.
    st = load_file(OUT / "mlp.safetensors")
    ref = np.maximum(x @ st["fc1.weight"].T + st["fc1.bias"], 0) @ st["fc2.weight"].T + st["fc2.bias"]
    assert np.allclose(y, ref, atol=1e-5), np.abs(y - ref).max()
    write_golden(OUT / "mlp.golden.json", "mlp.onnx", {"x": x}, {"y": y})

    # Same weights as TorchScript, plus a plain state_dict checkpoint for bad/.
    mlp = TorchMLP().eval()
    mlp.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in w.items()})
    torch.jit.save(torch.jit.script(mlp), str(OUT / "mlp.torchscript.pt"))
    strip_torchscript_debug_info(OUT / "mlp.torchscript.pt")
    with torch.no_grad():
        y_ts = torch.jit.load(str(OUT / "mlp.torchscript.pt"))(torch.from_numpy(x)).numpy()
    assert np.allclose(y_ts, y, atol=1e-5), np.abs(y_ts - y).max()
    torch.save(mlp.state_dict(), BAD / "checkpoint.pt")

    return model, x


def make_mlp_retrained(x):
    """The MLP after a retraining gone wrong: same signature, but the second layer's
    weights drifted, so outputs move and some rows change class. The registry's
    validation gate must refuse to promote it over mlp.onnx."""
    w = mlp_weights()
    drift = uniform(np.random.default_rng(3), w["fc2.weight"].shape, 16)
    w["fc2.weight"] = (w["fc2.weight"] + drift).astype(np.float32)
    onnx.save_model(build_mlp_onnx(w), OUT / "mlp_retrained.onnx")
    y = ort_run(OUT / "mlp_retrained.onnx", {"x": x})["y"]
    write_golden(OUT / "mlp_retrained.golden.json", "mlp_retrained.onnx", {"x": x}, {"y": y})


# --------------------------------------------------------------------------- CNN


def make_cnn():
    rng = np.random.default_rng(3)
    w = {
        "conv1.weight": uniform(rng, (8, 3, 3, 3), 3 * 9),
        "conv1.bias": uniform(rng, (8,), 3 * 9),
        "conv2.weight": uniform(rng, (16, 8, 3, 3), 8 * 9),
        "conv2.bias": uniform(rng, (16,), 8 * 9),
        "fc.weight": uniform(rng, (10, 16), 16),
        "fc.bias": uniform(rng, (10,), 16),
    }
    conv = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    nodes = [
        helper.make_node("Conv", ["image", "conv1.weight", "conv1.bias"], ["c1"], name="conv1", **conv),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "conv2.weight", "conv2.bias"], ["c2"], name="conv2", **conv),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1),
    ]
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 32, 32])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])
    onnx.save_model(onnx_model("cnn", nodes, [image], [logits], w), OUT / "cnn.onnx")

    x = np.random.default_rng(4).standard_normal((2, 3, 32, 32)).astype(np.float32)
    out = ort_run(OUT / "cnn.onnx", {"image": x})["logits"]
    # Cross-check the graph wiring against the same network in torch.
    t = {k: torch.from_numpy(v) for k, v in w.items()}
    with torch.no_grad():
        h = torch.relu(torch.nn.functional.conv2d(torch.from_numpy(x), t["conv1.weight"], t["conv1.bias"], padding=1))
        h = torch.nn.functional.max_pool2d(h, 2, 2)
        h = torch.relu(torch.nn.functional.conv2d(h, t["conv2.weight"], t["conv2.bias"], padding=1))
        ref = torch.nn.functional.linear(h.mean(dim=(2, 3)), t["fc.weight"], t["fc.bias"]).numpy()
    assert np.allclose(out, ref, atol=1e-5), np.abs(out - ref).max()
    write_golden(OUT / "cnn.golden.json", "cnn.onnx", {"image": x}, {"logits": out})


def make_vision():
    """An image classifier at 224x224 that costs real compute (about 1.2 G multiply-adds per
    image) with few weights (about 120k): the slow model the autoscaling examples profile."""
    rng = np.random.default_rng(11)
    w = {
        "conv1.weight": uniform(rng, (16, 3, 3, 3), 3 * 9),
        "conv1.bias": uniform(rng, (16,), 3 * 9),
        "conv2.weight": uniform(rng, (64, 16, 3, 3), 16 * 9),
        "conv2.bias": uniform(rng, (64,), 16 * 9),
        "conv3.weight": uniform(rng, (64, 64, 3, 3), 64 * 9),
        "conv3.bias": uniform(rng, (64,), 64 * 9),
        "conv4.weight": uniform(rng, (128, 64, 3, 3), 64 * 9),
        "conv4.bias": uniform(rng, (128,), 64 * 9),
        "fc.weight": uniform(rng, (10, 128), 128),
        "fc.bias": uniform(rng, (10,), 128),
    }
    same = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    pool = dict(kernel_shape=[2, 2], strides=[2, 2])
    nodes = [
        helper.make_node("Conv", ["image", "conv1.weight", "conv1.bias"], ["c1"], name="conv1", **same),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "conv2.weight", "conv2.bias"], ["c2"], name="conv2", **same),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("MaxPool", ["r2"], ["p2"], name="pool2", **pool),
        helper.make_node("Conv", ["p2", "conv3.weight", "conv3.bias"], ["c3"], name="conv3", **same),
        helper.make_node("Relu", ["c3"], ["r3"], name="relu3"),
        helper.make_node("MaxPool", ["r3"], ["p3"], name="pool3", **pool),
        helper.make_node("Conv", ["p3", "conv4.weight", "conv4.bias"], ["c4"], name="conv4", **same),
        helper.make_node("Relu", ["c4"], ["r4"], name="relu4"),
        helper.make_node("GlobalAveragePool", ["r4"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1),
    ]
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 224, 224])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])
    onnx.save_model(onnx_model("vision", nodes, [image], [logits], w), OUT / "vision.onnx")

    # Cross-check the wiring against a numpy evaluation of the same network on one image.
    x = np.random.default_rng(12).standard_normal((1, 3, 224, 224)).astype(np.float32)
    out = ort_run(OUT / "vision.onnx", {"image": x})["logits"]

    def conv(h, k, b):
        n, c, hh, ww = h.shape
        pad = np.pad(h, ((0, 0), (0, 0), (1, 1), (1, 1)))
        cols = np.stack([pad[:, :, i : i + hh, j : j + ww] for i in range(3) for j in range(3)], axis=2)
        y = np.einsum("nckhw,ock->nohw", cols, k.reshape(k.shape[0], c, 9), optimize=True)
        return np.maximum(y + b[None, :, None, None], 0)

    def max_pool(h):
        n, c, hh, ww = h.shape
        return h.reshape(n, c, hh // 2, 2, ww // 2, 2).max(axis=(3, 5))

    h = conv(x, w["conv1.weight"], w["conv1.bias"])
    h = max_pool(conv(h, w["conv2.weight"], w["conv2.bias"]))
    h = max_pool(conv(h, w["conv3.weight"], w["conv3.bias"]))
    h = conv(h, w["conv4.weight"], w["conv4.bias"])
    ref = h.mean(axis=(2, 3)) @ w["fc.weight"].T + w["fc.bias"]
    assert np.allclose(out, ref, atol=1e-4), np.abs(out - ref).max()


def make_bursty_trace():
    """Ten minutes of bursty inference traffic, one arrival time in seconds per line: a
    base rate that drifts around 100 req/s, and about one burst every two minutes of 1.4
    to 2.2 times it (rising over 30 to 60 s, holding 30 to 90 s, falling over 20 to 60
    s). Rates change every 100 ms; arrivals within each 100 ms are Poisson."""
    rng = np.random.default_rng(21)
    duration, dt = 600.0, 0.1
    steps = int(duration / dt)
    # The base: a mean-reverting walk in log space around ln(100).
    log_base = np.empty(steps)
    level = np.log(100.0)
    for i in range(steps):
        level += 0.02 * (np.log(100.0) - level) * dt + 0.03 * np.sqrt(dt) * rng.standard_normal()
        log_base[i] = level
    rate = np.exp(log_base)
    times = np.arange(steps) * dt
    t = rng.uniform(20.0, 60.0)
    while t < duration:
        rise, hold, fall = rng.uniform(30.0, 60.0), rng.uniform(30.0, 90.0), rng.uniform(20.0, 60.0)
        height = rng.uniform(1.4, 2.2)
        # A smooth step up, a plateau, a smooth step down (raised cosines).
        up = np.clip((times - t) / rise, 0.0, 1.0)
        down = np.clip((times - t - rise - hold) / fall, 0.0, 1.0)
        shape = 0.5 * (1 - np.cos(np.pi * up)) * 0.5 * (1 + np.cos(np.pi * down))
        rate *= 1.0 + (height - 1.0) * shape
        t += rise + hold + fall + rng.exponential(30.0)
    arrivals = []
    for i in range(steps):
        n = rng.poisson(rate[i] * dt)
        arrivals.extend(np.sort(rng.uniform(i * dt, (i + 1) * dt, n)))
    (OUT / "traces").mkdir(exist_ok=True)
    with open(OUT / "traces" / "bursty.txt", "w") as f:
        f.write("arrival_s\n")
        f.writelines(f"{a:.6f}\n" for a in arrivals)


# --------------------------------------------------------------------------- torch exporter


class Tagger(torch.nn.Module):
    """Token tagger: per-token scores plus a masked-mean pooled vector."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(100, 8)
        self.head = torch.nn.Linear(8, 4)
        self.proj = torch.nn.Linear(8, 8)

    def forward(self, tokens, mask):
        h = self.emb(tokens)
        scores = self.head(h)
        m = mask.unsqueeze(-1).to(h.dtype)
        pooled = torch.tanh(self.proj((h * m).sum(1) / m.sum(1).clamp(min=1.0)))
        return scores, pooled


def make_torch_tagger():
    # Weights from numpy rather than torch's init RNG, so they don't move with torch versions.
    rng = np.random.default_rng(5)
    model = Tagger().eval()
    model.load_state_dict(
        {
            "emb.weight": torch.from_numpy(rng.standard_normal((100, 8)).astype(np.float32)),
            "head.weight": torch.from_numpy(uniform(rng, (4, 8), 8)),
            "head.bias": torch.from_numpy(uniform(rng, (4,), 8)),
            "proj.weight": torch.from_numpy(uniform(rng, (8, 8), 8)),
            "proj.bias": torch.from_numpy(uniform(rng, (8,), 8)),
        }
    )

    rng = np.random.default_rng(6)
    tokens = rng.integers(0, 100, size=(2, 5), dtype=np.int64)
    mask = np.ones((2, 5), dtype=np.bool_)
    mask[1, 3:] = False  # padded tail in the second row
    args = (torch.from_numpy(tokens), torch.from_numpy(mask))

    path = OUT / "torch_tagger.onnx"
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
    torch.onnx.export(
        model,
        args,
        str(path),
        input_names=["tokens", "mask"],
        output_names=["scores", "pooled"],
        dynamic_shapes={"tokens": {0: batch, 1: seq}, "mask": {0: batch, 1: seq}},
        opset_version=TORCH_EXPORT_OPSET,
        dynamo=True,
        external_data=False,  # one self-contained .onnx file
        verbose=False,
    )
    exported = onnx.load(path)
    # The exporter records Python stack traces (with this machine's paths) per node.
    for node in exported.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    del exported.metadata_props[:]
    onnx.save_model(exported, path)
    onnx.checker.check_model(exported, full_check=True)
    got = {v.name: dims(v) for v in [*exported.graph.input, *exported.graph.output]}
    assert got == {
        "tokens": ["batch", "seq"],
        "mask": ["batch", "seq"],
        "scores": ["batch", "seq", 4],
        "pooled": ["batch", 8],
    }, got

    out = ort_run(path, {"tokens": tokens, "mask": mask})
    with torch.no_grad():
        scores, pooled = model(*args)
    assert np.allclose(out["scores"], scores.numpy(), atol=1e-5)
    assert np.allclose(out["pooled"], pooled.numpy(), atol=1e-5)
    write_golden(
        OUT / "torch_tagger.golden.json",
        "torch_tagger.onnx",
        {"tokens": tokens, "mask": mask},
        {"scores": out["scores"], "pooled": out["pooled"]},
    )


# --------------------------------------------------------------------------- MLflow


def make_mlflow_onnx(mlp_model, x):
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype("float32"), (-1, 64), "x")]),
        outputs=Schema([TensorSpec(np.dtype("float32"), (-1, 16), "y")]),
    )
    mlflow.onnx.save_model(
        mlp_model,
        str(fresh_dir(OUT / "mlflow_onnx")),
        signature=signature,
        input_example={"x": x[:2]},
        metadata={"source": "mlops testdata"},
        save_as_external_data=False,  # keep model.onnx self-contained, like mlp.onnx
    )


def make_mlflow_columns():
    signature = ModelSignature(
        inputs=Schema(
            [
                ColSpec("double", "sepal_length"),
                ColSpec("double", "sepal_width"),
                ColSpec("long", "id"),
                ColSpec("string", "species"),
            ]
        ),
        outputs=Schema([ColSpec("double", "score")]),
    )
    mlflow.pyfunc.save_model(
        str(fresh_dir(OUT / "mlflow_columns")),
        python_model=str(OUT / "iris_scorer.py"),  # model from code: no pickle
        signature=signature,
        input_example=pd.DataFrame(
            {"sepal_length": [5.1, 6.2], "sepal_width": [3.5, 2.9], "id": [1, 2], "species": ["setosa", "virginica"]}
        ),
    )
    # MLflow records where the code came from; keep this machine's path out of it.
    mlmodel = OUT / "mlflow_columns" / "MLmodel"
    mlmodel.write_text(mlmodel.read_text().replace(str(OUT / "iris_scorer.py"), "iris_scorer.py"))
    scores = mlflow.pyfunc.load_model(str(OUT / "mlflow_columns")).predict(
        pd.DataFrame({"sepal_length": [6.0], "sepal_width": [2.0], "id": [7], "species": ["setosa"]})
    )
    assert float(scores["score"].iloc[0]) == 2.5, scores


# --------------------------------------------------------------------------- TensorFlow


class Affine(tf.Module):
    def __init__(self, w, b):
        super().__init__()
        self.w = tf.Variable(w, name="w")
        self.b = tf.Variable(b, name="b")

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def __call__(self, x):
        return {"y": tf.matmul(x, self.w) + self.b}


class TwoHeads(tf.Module):
    def __init__(self, w, b, table):
        super().__init__()
        self.w = tf.Variable(w, name="w")
        self.b = tf.Variable(b, name="b")
        self.table = tf.Variable(table, name="table")

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="features")])
    def predict(self, features):
        return {"probabilities": tf.nn.softmax(tf.matmul(features, self.w) + self.b)}

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int64, name="tokens")])
    def embed(self, tokens):
        ids = tf.math.floormod(tokens, 100)  # any int64 id maps into the table
        return {"embedding": tf.reduce_mean(tf.gather(self.table, ids), axis=1)}


def make_tf_savedmodel():
    rng = np.random.default_rng(7)
    w, b = uniform(rng, (4, 3), 4), uniform(rng, (3,), 4)
    module = Affine(w, b)
    path = fresh_dir(OUT / "tf_savedmodel")
    tf.saved_model.save(module, str(path), signatures=module.__call__.get_concrete_function())

    x = np.random.default_rng(8).standard_normal((2, 4)).astype(np.float32)
    y = tf.saved_model.load(str(path)).signatures["serving_default"](x=tf.constant(x))["y"].numpy()
    assert np.allclose(y, x @ w + b, atol=1e-5)
    write_golden(OUT / "tf_savedmodel.golden.json", "tf_savedmodel", {"x": x}, {"y": y}, "serving_default")


def make_tf_named_signature():
    rng = np.random.default_rng(9)
    module = TwoHeads(uniform(rng, (4, 3), 4), uniform(rng, (3,), 4), rng.standard_normal((100, 8)).astype(np.float32))
    path = fresh_dir(OUT / "tf_named_signature")
    tf.saved_model.save(
        module,
        str(path),
        signatures={
            "predict": module.predict.get_concrete_function(),
            "embed": module.embed.get_concrete_function(),
        },
    )

    x = np.random.default_rng(10).standard_normal((2, 4)).astype(np.float32)
    loaded = tf.saved_model.load(str(path))
    assert sorted(loaded.signatures.keys()) == ["embed", "predict"]
    p = loaded.signatures["predict"](features=tf.constant(x))["probabilities"].numpy()
    assert np.allclose(p.sum(axis=1), 1.0, atol=1e-5)
    write_golden(
        OUT / "tf_named_signature.golden.json", "tf_named_signature", {"features": x}, {"probabilities": p}, "predict"
    )


# --------------------------------------------------------------------------- bad inputs


def make_bad():
    (BAD / "empty.bin").write_bytes(b"")

    data = bytearray(np.random.default_rng(11).integers(0, 256, size=4096, dtype=np.uint8).tobytes())
    # Must not start like an ONNX protobuf (0x08 = field 1, ir_version), a zip (PK) or b"ftrt".
    if data[0] == 0x08 or data[:2] == b"PK" or data[:4] == b"ftrt":
        data[0] = 0xFF
    (BAD / "random.bin").write_bytes(bytes(data))

    mlp_onnx = (OUT / "mlp.onnx").read_bytes()
    (BAD / "truncated_mlp.onnx").write_bytes(mlp_onnx[: len(mlp_onnx) // 2])

    st = (OUT / "mlp.safetensors").read_bytes()
    header_len = int.from_bytes(st[:8], "little")
    (BAD / "truncated.safetensors").write_bytes(st[: 8 + header_len // 2])
    (BAD / "short_data.safetensors").write_bytes(st[:-100])

    (BAD / "not_a_model.txt").write_text("This is a plain text file, not a model.\n")

    bad_yaml = "flavors: [unclosed\n"
    try:
        yaml.safe_load(bad_yaml)
    except yaml.YAMLError:
        pass
    else:
        raise AssertionError("bad_yaml/MLmodel must not parse")
    (fresh_dir(BAD / "bad_yaml")).mkdir()
    (BAD / "bad_yaml" / "MLmodel").write_text(bad_yaml)

    pb = (OUT / "tf_savedmodel" / "saved_model.pb").read_bytes()
    (fresh_dir(BAD / "truncated_savedmodel")).mkdir()
    (BAD / "truncated_savedmodel" / "saved_model.pb").write_bytes(pb[: len(pb) * 6 // 10])


def main():
    BAD.mkdir(exist_ok=True)
    mlp_model, x = make_mlp()
    make_mlp_retrained(x)
    make_cnn()
    make_vision()
    make_bursty_trace()
    make_torch_tagger()
    make_mlflow_onnx(mlp_model, x)
    make_mlflow_columns()
    make_tf_savedmodel()
    make_tf_named_signature()
    make_bad()  # last: it slices files written above
    shutil.rmtree(OUT / "__pycache__", ignore_errors=True)
    print(f"fixtures written to {OUT}")


if __name__ == "__main__":
    main()
