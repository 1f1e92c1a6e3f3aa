"""Prints the version an alias points at, as MLflow's own client reads it.

usage: mlflow-alias.py TRACKING_URI MODEL_NAME ALIAS
"""
import sys

from mlflow import MlflowClient


def main() -> None:
    uri, name, alias = sys.argv[1:4]
    print(MlflowClient(tracking_uri=uri).get_model_version_by_alias(name, alias).version)


if __name__ == "__main__":
    main()
