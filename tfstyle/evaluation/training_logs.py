"""Training curves for the evaluation report: the scalars of a model's TensorBoard logs
(MODEL_DIR/logs), and one PNG comparing the models' curves panel by panel."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from tfstyle.core.files import atomic_path

#: Order of the loss-plot panels: tags matching an earlier predicate come first.
TAG_ORDER = (
    lambda t: t in ("loss/G_gan", "loss/F_gan"),
    lambda t: t.startswith(("loss/cycle", "loss/idt", "loss/pix")),
    lambda t: t.startswith("loss/D_"),
    lambda t: t == "learning_rate",
)


def read_scalars(log_dir) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{tag: (steps, values)} of the scalar summaries in a TensorBoard log folder (TF2 scalars
    stored as tensors, and TF1 simple values); a step written twice (a resumed run) keeps the
    later value. {} when the folder holds no event files."""
    log_dir = Path(log_dir)
    if not log_dir.is_dir() or not any(log_dir.rglob("events.out.tfevents*")):
        return {}
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    series: dict[str, dict[int, float]] = {}
    runs = sorted({p.parent for p in log_dir.rglob("events.out.tfevents*")})
    for run in runs:
        acc = event_accumulator.EventAccumulator(
            str(run), size_guidance={event_accumulator.TENSORS: 0,
                                     event_accumulator.SCALARS: 0})
        acc.Reload()
        tags = acc.Tags()
        for tag in tags.get(event_accumulator.TENSORS, []):
            if acc.SummaryMetadata(tag).plugin_data.plugin_name != "scalars":
                continue
            for event in acc.Tensors(tag):
                value = tensor_util.make_ndarray(event.tensor_proto)
                if value.size == 1 and np.issubdtype(value.dtype, np.number):
                    series.setdefault(tag, {})[int(event.step)] = float(value.reshape(()))
        for tag in tags.get(event_accumulator.SCALARS, []):
            for event in acc.Scalars(tag):
                series.setdefault(tag, {})[int(event.step)] = float(event.value)
    return {tag: (np.array(sorted(v)), np.array([v[s] for s in sorted(v)]))
            for tag, v in sorted(series.items())}


def _smooth(values: np.ndarray, weight: float = 0.6) -> np.ndarray:
    """TensorBoard-style exponential moving average (debiased)."""
    out, last = np.empty(len(values)), 0.0
    for i, v in enumerate(values):
        last = last * weight + (1 - weight) * v
        out[i] = last / (1 - weight ** (i + 1))
    return out


def plot_losses(runs: dict[str, dict], path) -> Path | None:
    """One PNG with a panel per scalar tag (losses in TAG_ORDER, then learning_rate and any
    other tags) and a line per model, so models compare at a glance; noisy series (more than
    20 points) are drawn faint with a moving average on top. `runs` maps a model name to
    `read_scalars` output; None when no model has scalars."""
    runs = {name: s for name, s in runs.items() if s}
    if not runs:
        return None
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError("the loss plots need matplotlib: pip install matplotlib") from err
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    tags = sorted({t for s in runs.values() for t in s})
    order = [t for wanted in TAG_ORDER for t in tags if wanted(t)]
    tags = list(dict.fromkeys(order + tags))
    columns = min(3, len(tags))
    rows = math.ceil(len(tags) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 2.9 * rows), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, tag in zip(axes.flat, tags):
        for i, (name, scalars) in enumerate(runs.items()):
            if tag not in scalars:
                continue
            steps, values = scalars[tag]
            colour = colours[i % len(colours)]
            if len(values) > 20:
                ax.plot(steps, values, color=colour, alpha=0.25, linewidth=0.8)
                values = _smooth(values)
            ax.plot(steps, values, color=colour, linewidth=1.4, label=name)
        ax.set_title(tag.removeprefix("loss/"), fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tags):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    for ax in axes.flat:  # the legend of the panel with the most models
        h, lab = ax.get_legend_handles_labels()
        if len(lab) > len(labels):
            handles, labels = h, lab
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), fontsize=9)
    fig.tight_layout(rect=(0, 0.04 + 0.02 * math.ceil(len(labels) / 3), 1, 1))
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
    return path
