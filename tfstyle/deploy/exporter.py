"""`export_generators`: every trained model of a model directory to TF Serving and LiteRT,
each artifact checked against the Keras model before it is kept.

Layout written under OUT:

    OUT/serving/<model_name>/<version>/saved_model.pb, variables/   (TF Serving)
    OUT/serving/models.config                                        (--model_config_file)
    OUT/serving/batching_parameters.txt                              (--batching_parameters_file)
    OUT/tflite/<model_name>_<variant>.tflite
    OUT/tflite/models.json                                           (what the apps read)
    OUT/export_report.json                                           (every artifact, refused too)

An export runs in five steps:

1. `targets.preflight`: the files the options name exist, OUT can be written (nothing is
   loaded yet);
2. `targets.load_targets`: the models, each refused if a weight or its output on the check
   images is not finite;
3. every format (`formats.FORMATS`) lists its candidates for every target (an existing
   SavedModel version is refused here, unless --overwrite);
4. each candidate is written and checked under the work folder OUT/.work-<pid>-<id>/;
5. the accepted candidates are moved into place, a LiteRT file of the same name as a refused
   one is deleted, and the records are written (`records`).

Until step 5 nothing under OUT changes, so an export that fails, or is killed, leaves the
previous export as it was; the work folder is removed in any case, and work folders of
earlier exports whose process is gone are removed when the next export starts. A refused
artifact (agreement below its threshold, custom operators, tensors of rank > 4, a failed
conversion) is listed under "refused" in models.json and the report, and
`export_generators` raises ExportError naming every one after the accepted ones are in
place.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import numpy as np

from tfstyle.core.files import remove
from tfstyle.deploy import checks, records
from tfstyle.deploy.checks import ExportError
from tfstyle.deploy.formats import FORMATS, Candidate, ExportFormat, Refused
from tfstyle.deploy.options import ExportOptions
from tfstyle.deploy.records import MODELS_JSON_FORMAT, MODELS_JSON_VERSION
from tfstyle.deploy.targets import load_targets, preflight

__all__ = ["ExportError", "ExportOptions", "MODELS_JSON_FORMAT", "MODELS_JSON_VERSION",
           "export_generators", "remove_leftovers"]

WORK_PREFIX = ".work-"
# Work folders are .work-<pid>-<id>; folders of tfstyle 0.1's exporter carry their pid at
# the end (serving/<name>/.tmp-<version>-<pid>) or none (.work-<random>).
_PID = re.compile(r"^\.(?:work-(\d+)-.*|tmp-\d+-(\d+))$")


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_leftovers(out: Path) -> list[Path]:
    """Remove the work folders that exports into `out` left when they were killed (those
    of a process that is still running are theirs to remove); returns what was removed."""
    removed = []
    for path in [*out.glob(f"{WORK_PREFIX}*"), *out.glob("serving/*/.tmp-*")]:
        match = _PID.match(path.name)
        pid = next((int(g) for g in match.groups() if g), None) if match else None
        if pid is None or not _running(pid):
            remove(path)
            removed.append(path)
    return removed


def _write_and_check(plan: list[tuple[ExportFormat, Candidate]], options: ExportOptions,
                     log) -> tuple[list[dict], dict]:
    """Write and check every candidate under the work folder; (artifact records, Keras
    reference latency per model)."""
    artifacts, keras_latency = [], {}
    for fmt, candidate in plan:
        target = candidate.target
        if target.name not in keras_latency:
            log(f"{target.name}: checking against {len(target.images)} images of "
                f"{target.folder}")
            probe = checks.center_square(target.images[0], options.tflite_size)
            probe = probe.astype(np.float32)[None]
            keras_latency[target.name] = checks.measure_latency(
                lambda: target.reference(probe), options.latency_runs).as_dict()
        log(f"writing {candidate.artifact} ...")
        value, reason = None, ""
        try:
            fmt.write(candidate)
            value = fmt.check(candidate)
        except Refused as err:
            reason = str(err)
        if not reason and not checks.passes(value, candidate.threshold):
            model = "Keras generator" if target.kind == "generator" else "Keras stylizer"
            reason = ("its output holds NaN or inf" if value is None else
                      f"PSNR {value:.2f} dB against the {model} is below "
                      f"{candidate.threshold:g} dB")
            if (target.kind == "stylizer" and fmt.kind == "tflite"
                    and options.stylize.attention_on == "whitened"):
                reason += (" (LiteRT whitens by Newton-Schulz iterations, whose small error the "
                           "attention on whitened features turns into other fusion weights: "
                           "export with --attention_on=features, see docs/export.md)")
        entry = candidate.entry
        entry.update(status="refused" if reason else "ok", threshold_db=candidate.threshold)
        if reason:
            entry["reason"] = reason
            log(f"REFUSED {candidate.artifact}: {reason}")
        else:
            log(f"ok {candidate.artifact}: PSNR {value:.2f} dB (min {candidate.threshold:g} dB)")
        entry["source"] = target.source
        artifacts.append(entry)
    return artifacts, keras_latency


def _install(out: Path, work: Path, plan: list[tuple[ExportFormat, Candidate]]) -> None:
    """Move the accepted candidates into place (a SavedModel version that --overwrite
    replaces is moved into the work folder, and removed with it); delete LiteRT files of
    earlier exports named like a refused candidate."""
    for _, candidate in plan:
        final = out / candidate.artifact
        if candidate.entry["status"] == "ok":
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.is_dir():
                replaced = work / "replaced" / uuid.uuid4().hex
                replaced.parent.mkdir(parents=True, exist_ok=True)
                os.replace(final, replaced)
            os.replace(candidate.work, final)
        elif final.is_file():
            final.unlink()


def export_generators(model_dir, out_dir, options: ExportOptions | None = None,
                      log=print) -> dict:
    """Export every model of `model_dir` under `out_dir` (see the module docstring) and
    return the report; raises ExportError if anything was refused (after the accepted
    artifacts and the records are in place), or before anything is written if the export
    cannot be made."""
    options = options or ExportOptions()
    out = Path(out_dir)
    preflight(model_dir, out, options)
    targets = load_targets(model_dir, options)
    thresholds = {kind: options.thresholds(kind) for kind in ("generator", "stylizer")}
    work = out / f"{WORK_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    formats = [cls(options, out, work, thresholds) for cls in FORMATS if cls.wanted(options)]
    plan = [(fmt, candidate) for target in targets for fmt in formats
            for candidate in fmt.candidates(target)]
    out.mkdir(parents=True, exist_ok=True)
    for path in remove_leftovers(out):
        log(f"removed {path}, left by an export that did not finish")
    work.mkdir()
    try:
        artifacts, keras_latency = _write_and_check(plan, options, log)
        _install(out, work, plan)
        records.write_serving_files(out, options.batching)
        records.write_models_json(out, options.tflite_size, artifacts)
        report = records.write_report(out, options.tflite_size, thresholds, artifacts,
                                      keras_latency)
    finally:
        remove(work)
    log(records.format_table(report))
    refused = [a for a in artifacts if a["status"] == "refused"]
    if refused:
        raise ExportError("export refused " + "; ".join(
            f"{a['artifact']} ({a['reason']})" for a in refused))
    return report
