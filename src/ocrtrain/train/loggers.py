"""The run's Lightning loggers, from the `logger` config group (csv, tensorboard, mlflow)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ocrtrain.train.errors import ConfigError

# MLflow 3 refuses its file store unless asked for it: the one store needing no server or
# database, which is what a local training run wants.
MLFLOW_FILE_STORE_ENV = "MLFLOW_ALLOW_FILE_STORE"


def mlflow_logger(experiment_name: str, run_name: str, store: str, **kwargs: Any) -> Any:
    """Lightning's MLFlowLogger writing to the local file store folder `store`."""
    try:
        from lightning.pytorch.loggers import MLFlowLogger
        from mlflow import __version__  # noqa: F401
    except ImportError:
        raise ConfigError(
            "logger=mlflow needs MLflow: pip install 'ocrtrain[mlflow]' (or mlflow-skinny)"
        ) from None
    if not os.environ.get(MLFLOW_FILE_STORE_ENV):
        os.environ[MLFLOW_FILE_STORE_ENV] = "true"
    uri = Path(store).expanduser().resolve().as_uri()
    return MLFlowLogger(
        experiment_name=experiment_name, run_name=run_name, tracking_uri=uri, **kwargs
    )


def build_loggers(spec: Any, build: Any) -> list[Any]:
    """One logger per entry of the `logger` group's config (none for `logger=null`)."""
    if not spec:
        return []
    return [build(entry) for entry in spec.values() if entry and "_target_" in entry]
