"""The anatomy model as an MLflow pyfunc: registered, versioned, loadable by any
MLflow client (`mlflow.pyfunc.load_model("models:/dicom-triage-anatomy/1")`)."""
from __future__ import annotations

import mlflow.pyfunc
import numpy as np
import pandas as pd


class AnatomyModel(mlflow.pyfunc.PythonModel):
    """Embeddings (first column: vectors) → region probabilities, one column per region."""

    def load_context(self, context):
        from dicom_triage.udfs.anatomy import load_model
        self.model = load_model(context.artifacts["bundle"])

    def predict(self, context, model_input, params=None):
        from dicom_triage.udfs.anatomy import predict_proba
        vectors = np.stack(model_input.iloc[:, 0].to_numpy())
        return pd.DataFrame(predict_proba(self.model, vectors), columns=list(self.model.classes))
