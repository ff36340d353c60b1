"""Database and tracking-server URLs with their passwords hidden: safe to print, log or store."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def masked(url: str) -> str:
    """``postgresql://vae:secret@host/db`` -> ``postgresql://vae:***@host/db``; others unchanged.

    >>> masked("http://me:pw@mlflow:5000")
    'http://me:***@mlflow:5000'
    """
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# Where `mlflow ui` serves unless told otherwise.
LOCAL_UI = "http://127.0.0.1:5000"
# MLflow 3's UI opens every experiment in its GenAI view (traces, evaluations) unless the page's
# address names the model-training view, where runs, their metrics and models are shown.
TRAINING_VIEW = "workflowType=machine_learning"


def experiment_page(ui: str, experiment_id: str) -> str:
    """The experiment's runs table in the MLflow UI at ``ui``, in the model-training view.

    >>> experiment_page("http://127.0.0.1:5000/", "3")
    'http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning'
    """
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs?{TRAINING_VIEW}"


def run_page(ui: str, experiment_id: str, run_id: str, tab: str = "") -> str:
    """One run's page (``tab``: ``model-metrics``, ``artifacts``; the overview by default).

    >>> run_page("http://mlflow:5000", "3", "ab12", "model-metrics")
    'http://mlflow:5000/#/experiments/3/runs/ab12/model-metrics?workflowType=machine_learning'
    """
    path = f"runs/{run_id}" + (f"/{tab}" if tab else "")
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/{path}?{TRAINING_VIEW}"


def page_to_open(uri: str, experiment_id: str, run_id: str | None = None) -> str:
    """How to see a run (or, without ``run_id``, the experiment) logged to the store ``uri``: a
    tracking server serves the page itself; a local store needs ``mlflow ui`` first.

    >>> page_to_open("sqlite:///mlflow.db", "1")
    'mlflow ui --backend-store-uri sqlite:///mlflow.db, then open http://127.0.0.1:5000/#/experiments/1/runs?workflowType=machine_learning'
    >>> page_to_open("http://mlflow:5000", "1", "ab12")
    'open http://mlflow:5000/#/experiments/1/runs/ab12?workflowType=machine_learning'
    """
    server = uri.startswith(("http://", "https://"))
    ui = masked(uri) if server else LOCAL_UI
    page = run_page(ui, experiment_id, run_id) if run_id else experiment_page(ui, experiment_id)
    return f"open {page}" if server else f"mlflow ui --backend-store-uri {masked(uri)}, then open {page}"
