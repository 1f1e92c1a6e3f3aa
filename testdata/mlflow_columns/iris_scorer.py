"""The model code of the mlflow_columns fixture, saved as MLflow "model from code"
(no pickle): a toy scorer; only its column-form signature matters."""

import mlflow.pyfunc
import pandas as pd
from mlflow.models import set_model


class IrisScorer(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        score = 0.5 * model_input["sepal_length"] - 0.25 * model_input["sepal_width"]
        return pd.DataFrame({"score": score.astype("float64")})


set_model(IrisScorer())
