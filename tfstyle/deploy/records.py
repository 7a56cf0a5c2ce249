"""The files that describe an export, written once its artifacts are in place:

    OUT/serving/models.config               TF Serving --model_config_file
    OUT/serving/batching_parameters.txt     TF Serving --batching_parameters_file
    OUT/tflite/models.json                  what the apps read (docs/export.md: schema)
    OUT/export_report.json                  every artifact, refused ones too

models.json and the report keep the entries of other models that earlier exports wrote into
the same OUT (at the same LiteRT size, with their files still there). Every file is written
atomically.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

from tfstyle.core.files import write_text_atomic
from tfstyle.deploy import saved_model

MODELS_JSON_FORMAT = "tfstyle.litert_models"
MODELS_JSON_VERSION = 1


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _read_json(path: Path) -> dict:
    """An earlier record, or {} when there is none or it is not a JSON object."""
    if not path.is_file():
        return {}
    try:
        document = json.loads(path.read_text())
    except (ValueError, RecursionError, UnicodeDecodeError):
        return {}
    return document if isinstance(document, dict) else {}


def write_serving_files(out: Path, batching: dict | None) -> None:
    """models.config naming every model with a complete version under OUT/serving, and the
    batching parameters beside it."""
    root = out / "serving"
    if not root.is_dir():
        return
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and any(
        v.is_dir() and v.name.isdigit() and (v / "saved_model.pb").is_file()
        for v in p.iterdir()))
    if names:
        write_text_atomic(root / "models.config", saved_model.models_config(names))
        write_text_atomic(root / "batching_parameters.txt",
                          saved_model.batching_parameters(batching))


def models_json_entry(artifact: dict) -> dict:
    """One accepted LiteRT file as models.json describes it (keys in a fixed order)."""
    entry = {
        "file": artifact["file"],
        "model_name": artifact["model_name"],
        "kind": artifact["model_kind"],
        "direction": artifact["direction"],
        "source_domain": artifact["source_domain"],
        "target_domain": artifact["target_domain"],
        "variant": artifact["variant"],
        "size_bytes": artifact["size_bytes"],
        "sha256": artifact["sha256"],
        "signature_key": artifact["signature_key"],
        "input": artifact["input"],
        "output": artifact["output"],
        "agreement": {**artifact["agreement"], "threshold_db": artifact["threshold_db"]},
        "latency_ms": artifact["latency_ms"],
        "ops": artifact["ops"],
        "max_tensor_rank": artifact["max_tensor_rank"],
        "source": artifact["source"],
    }
    if "calibration" in artifact:
        entry["calibration"] = artifact["calibration"]
    return entry


def write_models_json(out: Path, size: int, artifacts: list[dict]) -> None:
    """OUT/tflite/models.json: the accepted LiteRT files of this export, those of earlier
    exports of other models at the same size whose files are still there, and this
    export's refused files."""
    entries = [a for a in artifacts if a["kind"] == "tflite"]
    if not entries:
        return
    path = out / "tflite" / "models.json"
    models = [models_json_entry(a) for a in entries if a["status"] == "ok"]
    done = {(a["model_name"], a["variant"]) for a in entries}
    old = _read_json(path)
    if old.get("size") == size and isinstance(old.get("models"), list):
        models += [m for m in old["models"] if isinstance(m, dict)
                   and (m.get("model_name"), m.get("variant")) not in done
                   and (path.parent / str(m.get("file", ""))).is_file()]
    document = {
        "format": MODELS_JSON_FORMAT,
        "format_version": MODELS_JSON_VERSION,
        "created_utc": _now(),
        "size": size,
        "models": sorted(models, key=lambda m: (str(m.get("model_name")), str(m.get("variant")))),
        "refused": [{k: a.get(k) for k in ("file", "model_name", "direction", "variant",
                                            "reason", "threshold_db")}
                    | {"psnr_db": a.get("agreement", {}).get("psnr_db")}
                    for a in entries if a["status"] != "ok"],
    }
    write_text_atomic(path, json.dumps(document, indent=2, allow_nan=False) + "\n")


def write_report(out: Path, size: int, thresholds: dict, artifacts: list[dict],
                 keras_latency: dict) -> dict:
    """OUT/export_report.json (merged with an earlier report's other models); returns this
    export's part of it."""
    import tensorflow as tf

    import tfstyle

    path = out / "export_report.json"
    ours = {a["model_name"] for a in artifacts} | set(keras_latency)
    merged_artifacts, merged_latency = list(artifacts), dict(keras_latency)
    old = _read_json(path)
    if old.get("tflite_size") == size:
        merged_artifacts += [a for a in old.get("artifacts", [])
                             if isinstance(a, dict) and a.get("model_name") not in ours]
        old_latency = old.get("keras_latency_ms", {})
        if isinstance(old_latency, dict):
            merged_latency.update({k: v for k, v in old_latency.items() if k not in ours})
    report = {"created_utc": _now(), "tfstyle_version": tfstyle.__version__,
              "tensorflow_version": tf.__version__, "tflite_size": size,
              "thresholds_db": thresholds, "cpu_count": os.cpu_count(),
              "keras_latency_ms": merged_latency, "artifacts": merged_artifacts}
    write_text_atomic(path, json.dumps(report, indent=2, default=str, allow_nan=False) + "\n")
    return {**report, "artifacts": artifacts, "keras_latency_ms": keras_latency}


def format_table(report: dict) -> str:
    """Markdown table of an export report: size, agreement and CPU latency per artifact."""
    rows = ["| artifact | size (MB) | PSNR vs Keras (dB) | min (dB) "
            "| CPU latency median / p90 (ms) | status |",
            "|---|---:|---:|---:|---:|---|"]
    for name, lat in report.get("keras_latency_ms", {}).items():
        rows.append(f"| keras {name} (reference) | | | | "
                    f"{lat['median_ms']:.1f} / {lat['p90_ms']:.1f} | |")
    for a in report["artifacts"]:
        size = f"{a['size_bytes'] / 1e6:.2f}" if a.get("size_bytes") else ""
        value = a.get("agreement", {}).get("psnr_db")
        lat = a.get("latency_ms")
        latency = f"{lat['median_ms']:.1f} / {lat['p90_ms']:.1f}" if lat else ""
        rows.append(f"| {a['artifact']} | {size} | {'' if value is None else f'{value:.2f}'} | "
                    f"{a['threshold_db']:g} | {latency} | {a['status']} |")
        if a.get("latency_bytes_ms"):
            lb = a["latency_bytes_ms"]
            rows.append(f"| {a['artifact']} translate_bytes | | | | "
                        f"{lb['median_ms']:.1f} / {lb['p90_ms']:.1f} | |")
    return "\n".join(rows)
