"""Log a finished run to MLflow (``--mlflow``): parameters, metrics with CI bounds, the report.

Needs the ``mlflow`` extra (``pip install 'vlmtrust[mlflow]'``, which installs mlflow-skinny).
Only local stores are used — a ``file:`` folder (default: ``RUN/mlruns``) or a ``sqlite:``
database — so logging works offline and sends nothing anywhere. One MLflow run is logged per
model of the audit, in the experiment ``vlmtrust``:

* params: model spec, kind, seed, limit, data, and every probe parameter as ``PROBE.KEY``
  (values as the run recorded them, secrets already redacted);
* metrics: ``PROBE/METRIC`` with ``….ci_low`` and ``….ci_high``, plus ``PROBE/errors``;
* tags: the model's fingerprint, the vlmtrust version, the run folder;
* artifacts: ``results.json``, ``spec.json``, the recorded config, ``report.html``/``.md``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from vlmtrust.core.errors import InputError
from vlmtrust.core.results import AuditLog

__all__ = ["ENV_URI", "EXPERIMENT", "default_uri", "log_run", "tracking_uri"]

ENV_URI = "VLMTRUST_MLFLOW_URI"
"""Environment variable naming the tracking store when ``--mlflow-uri`` is not given."""
EXPERIMENT = "vlmtrust"
_PARAM_MAX = 500
_BAD_KEY = re.compile(r"[^A-Za-z0-9_\-. /]")
_ARTIFACTS = (
    "results.json",
    "spec.json",
    "config.toml",
    "config.yaml",
    "report.html",
    "report.md",
)


def default_uri(run_dir: Path) -> str:
    """The local file store inside the run folder: ``file:RUN/mlruns`` (absolute)."""
    return (Path(run_dir).resolve() / "mlruns").as_uri()


def tracking_uri(given: str | None, run_dir: Path) -> str:
    """The store to log to: ``given``, else ``$VLMTRUST_MLFLOW_URI``, else :func:`default_uri`.

    A plain path becomes a ``file:`` URI.

    Raises:
        InputError: the URI is not a local store (``file:`` or ``sqlite:``).
    """
    uri = given or os.environ.get(ENV_URI) or default_uri(run_dir)
    if "://" not in uri and not uri.startswith(("file:", "sqlite:")):
        return Path(uri).resolve().as_uri()
    if not uri.startswith(("file:", "sqlite:")):
        raise InputError(
            f"--mlflow-uri {uri}: vlmtrust logs only to a local store (offline); give a folder, "
            "a file:/// URI or sqlite:///PATH.db"
        )
    return uri


def _key(text: str) -> str:
    """An MLflow-safe metric or param key (letters, digits, ``_-. /``)."""
    return _BAD_KEY.sub("_", text)[:250]


def _value(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v, default=str, sort_keys=True)
    return text if len(text) <= _PARAM_MAX else text[: _PARAM_MAX - 1] + "…"


def _params(log: AuditLog) -> dict[str, str]:
    spec = log.spec
    out = {
        "model": spec.model.spec,
        "kind": spec.model.kind,
        "seed": str(spec.seed),
        "limit": "none" if spec.limit is None else str(spec.limit),
        "data": spec.data or "synthworld",
        "probes": ", ".join(r.probe for r in log.results),
    }
    for r in log.results:
        for k, v in r.params.items():
            out[_key(f"{r.probe}.{k}")] = _value(v)
    return out


def _metrics(log: AuditLog) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in log.results:
        out[_key(f"{r.probe}/errors")] = float(r.n_errors)
        for m in r.metrics:
            if m.value is None:
                continue
            base = _key(f"{r.probe}/{m.name}")
            out[base] = float(m.value)
            if m.ci_low is not None:
                out[base + ".ci_low"] = float(m.ci_low)
            if m.ci_high is not None:
                out[base + ".ci_high"] = float(m.ci_high)
    return out


def _import_mlflow() -> Any:
    try:
        import mlflow  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        raise InputError(
            "--mlflow needs the mlflow extra: pip install 'vlmtrust[mlflow]' (mlflow-skinny)"
        ) from None
    return mlflow


def log_run(run_dir: Path, uri: str | None = None) -> list[str]:
    """Log the run in ``run_dir`` (one model, or each model of a multi-model audit).

    Returns the MLflow run ids, one per model.

    Raises:
        InputError: the extra is not installed, the URI is not local, or the run is unreadable.
    """
    from vlmtrust.report.rundir import load_runs

    run_dir = Path(run_dir)
    store = tracking_uri(uri, run_dir)
    if store.startswith("file:"):
        # MLflow 3 keeps the file store behind this switch; it is the offline default here.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    mlflow = _import_mlflow()
    client = mlflow.tracking.MlflowClient(tracking_uri=store)
    metric_cls, param_cls = mlflow.entities.Metric, mlflow.entities.Param
    exp = client.get_experiment_by_name(EXPERIMENT)
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(EXPERIMENT)
    ids = []
    for run in load_runs(run_dir):
        log = run.log
        created = client.create_run(
            exp_id,
            run_name=f"{run_dir.name}/{run.name}" if run.directory != run_dir else run_dir.name,
            tags={
                "vlmtrust.model": log.spec.model.spec,
                "vlmtrust.fingerprint": log.spec.model.fingerprint,
                "vlmtrust.version": log.spec.vlmtrust_version,
                "vlmtrust.run_dir": str(run.directory.resolve()),
            },
        )
        rid = created.info.run_id
        params = [param_cls(k, v) for k, v in _params(log).items()]
        metrics = [metric_cls(k, v, 0, 0) for k, v in _metrics(log).items()]
        for i in range(0, max(len(params), len(metrics)), 100):  # MLflow's batch limit
            client.log_batch(rid, metrics=metrics[i : i + 100], params=params[i : i + 100])
        for d in {run.directory, run_dir}:
            for name in _ARTIFACTS:
                if (d / name).is_file():
                    client.log_artifact(rid, str(d / name))
        client.set_terminated(rid)
        ids.append(rid)
    return ids
