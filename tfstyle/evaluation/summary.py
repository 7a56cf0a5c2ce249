"""What a rating study found: the seeds' tables, from the stored answers.

* Caricature study (`summarize`, `format_summary`): per model, the mean score of the train
  images (similarity to the illustrator's drawing) and of the test images (completeness as a
  caricature), each with a 95% confidence interval of the mean (Student t, n - 1 degrees of
  freedom, over the answers) and the numbers of answers and raters: the seed's table 2 with
  models as rows.
* Word study (`summarize_words`, `format_word_summary`): per texture word, the share of
  answers that picked the right word, for each content image and over all of them, with a 95%
  Wilson score interval, then the same over every word, beside the chance level (1 / the
  number of candidate words shown).

Answers of one rater are not independent, so the intervals are optimistic when few raters
give many answers; the rater count is reported beside them. Each rater's latest answer per
item counts.
"""

from __future__ import annotations

import math
import statistics
import unicodedata

from tfstyle.evaluation.answers import RatingStore
from tfstyle.evaluation.studies import SCALE, SPLITS

COLUMNS = {"train": "train similarity", "test": "test completeness"}


# ------------------------------------------------------------------------------------------
# Intervals
# ------------------------------------------------------------------------------------------


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= c * d
        if abs(c * d - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """CDF of Student's t distribution with `df` degrees of freedom."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """Inverse of `t_cdf` (bisection to machine precision)."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"need 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def mean_ci(scores, level: float = 0.95) -> tuple[float, float | None, float | None]:
    """(mean, low, high): the t confidence interval of the mean (None with fewer than 2)."""
    n = len(scores)
    if n == 0:
        return float("nan"), None, None
    mean = sum(scores) / n
    if n < 2:
        return mean, None, None
    sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1))
    half = t_quantile(0.5 + level / 2.0, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def wilson(correct: int, n: int, level: float = 0.95) -> tuple[float | None, float | None]:
    """Wilson score interval of a proportion correct / n ((None, None) when n is 0)."""
    if n == 0:
        return None, None
    z = statistics.NormalDist().inv_cdf(0.5 + level / 2.0)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


# ------------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------------


def _width(text: str) -> int:
    """Columns `text` takes in a terminal (East Asian wide characters take two)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _table(header: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    """Aligned text columns; the first `left` columns flush left, the others right."""
    widths = [max(_width(r[i]) for r in [header] + rows) for i in range(len(header))]

    def line(row):
        cells = [c + " " * (w - _width(c)) if i < left else " " * (w - _width(c)) + c
                 for i, (c, w) in enumerate(zip(row, widths))]
        return "  ".join(cells).rstrip()

    return [line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in rows]


# ------------------------------------------------------------------------------------------
# The caricature study
# ------------------------------------------------------------------------------------------


def summarize(store: RatingStore, models: list[str] | None = None) -> list[dict]:
    """Per model and split: n answers, raters, mean and 95% CI of the latest answers."""
    latest = store.latest()
    names = list(models or [])
    names += sorted({r["model"] for r in latest} - set(names))
    rows = []
    for model in names:
        for split in SPLITS:
            picked = [r for r in latest if r["model"] == model and r["split"] == split]
            mean, low, high = mean_ci([r["score"] for r in picked])
            rows.append({"model": model, "split": split, "n": len(picked),
                         "raters": len({r["rater"] for r in picked}),
                         "mean": mean if picked else None, "ci_low": low, "ci_high": high})
    return rows


def format_summary(rows: list[dict]) -> str:
    """The seed's table: a row per model; train similarity and test completeness, each as
    mean, 95% interval and answers (raters)."""
    header = ["model"]
    for split in SPLITS:
        header += [f"{COLUMNS[split]} (mean)", "95% interval", "answers (raters)"]
    table = []
    for model in dict.fromkeys(r["model"] for r in rows):
        line = [model]
        for split in SPLITS:
            r = next((r for r in rows if r["model"] == model and r["split"] == split), None)
            if not r or not r["n"]:
                line += ["-", "-", "0"]
                continue
            ci = "-" if r["ci_low"] is None else f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
            line += [f"{r['mean']:+.3f}", ci, f"{r['n']} ({r['raters']})"]
        table.append(line)
    scale = ", ".join(f"{s:+d} {label}" if s else f"0 {label}" for s, label, _ in SCALE)
    return "\n".join(_table(header, table) + [
        f"scale: {scale}; 95% interval: Student t over the answers (latest per rater and "
        "item)"])


# ------------------------------------------------------------------------------------------
# The word study
# ------------------------------------------------------------------------------------------


def _share(picked: list[dict]) -> dict:
    correct = sum(r["chosen"] == r["word"] for r in picked)
    low, high = wilson(correct, len(picked))
    return {"correct": correct, "n": len(picked), "raters": len({r["rater"] for r in picked}),
            "accuracy": correct / len(picked) if picked else None, "ci_low": low,
            "ci_high": high}


def summarize_words(store: RatingStore, words: list[str] | None = None,
                    contents: list[str] | None = None) -> dict:
    """{"words": {word: {"all": share, "by_content": {content: share}}}, "all": share,
    "by_content": {content: share}, "chance": mean of 1 / candidates shown}, where a share
    holds correct, n, raters, accuracy and its 95% Wilson interval."""
    latest = store.choices(latest_only=True)
    words = list(words or []) + sorted({r["word"] for r in latest} - set(words or []))
    contents = (list(contents or [])
                + sorted({r["content"] for r in latest} - set(contents or [])))
    per_word = {}
    for word in words:
        picked = [r for r in latest if r["word"] == word]
        per_word[word] = {"all": _share(picked), "by_content": {
            c: _share([r for r in picked if r["content"] == c]) for c in contents}}
    return {"words": per_word, "all": _share(latest),
            "by_content": {c: _share([r for r in latest if r["content"] == c])
                           for c in contents},
            "chance": (sum(1 / len(r["candidates"]) for r in latest) / len(latest)
                       if latest else None)}


def format_word_summary(summary: dict) -> str:
    """The word study's table: a row per word (then all words), the share correct per
    content image and over all, its 95% interval and the answers (raters)."""
    contents = list(summary["by_content"])

    def cells(entry):
        share = entry["all"]
        per_content = [f"{s['correct']}/{s['n']}" if s["n"] else "-"
                       for s in entry["by_content"].values()]
        if not share["n"]:
            return per_content + ["-", "-", "0"]
        return per_content + [f"{share['accuracy']:.3f}",
                              f"[{share['ci_low']:.3f}, {share['ci_high']:.3f}]",
                              f"{share['n']} ({share['raters']})"]

    header = ["word", *contents, "accuracy", "95% interval", "answers (raters)"]
    rows = [[word, *cells(entry)] for word, entry in summary["words"].items()]
    rows.append(["all words", *cells({"all": summary["all"],
                                      "by_content": summary["by_content"]})])
    chance = summary["chance"]
    return "\n".join(_table(header, rows) + [
        "columns per content image: right answers / answers; accuracy: share of right "
        "answers, 95% Wilson interval (latest answer per rater and item); chance level "
        + ("-" if chance is None else f"{chance:.3f}")])
