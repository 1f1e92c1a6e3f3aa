"""Logs an ONNX model into an MLflow tracking server with MLflow's own client, the way a
researcher would, and registers and aliases it; prints the result as JSON.

usage: mlflow-log-model.py TRACKING_URI MODEL_NAME ALIAS ONNX_FILE
"""
import json
import sys

import mlflow
import onnx
from mlflow import MlflowClient


def main() -> None:
    uri, name, alias, path = sys.argv[1:5]
    mlflow.set_tracking_uri(uri)
    model = onnx.load(path)
    with mlflow.start_run() as run:
        mlflow.log_metric("accuracy", 0.93)
        mlflow.log_param("lr", "0.01")
        info = mlflow.onnx.log_model(model, name="model", registered_model_name=name)
    client = MlflowClient()
    version = int(info.registered_model_version)
    client.set_registered_model_alias(name, alias, version)
    print(json.dumps({"version": version, "run_id": run.info.run_id}))


if __name__ == "__main__":
    main()
