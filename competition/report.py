"""Per-run report: the data, training curves, scores, confusion, mistakes and pseudo-labels.

`write_report(run_dir, paths)` writes PNGs into `<run_dir>/report/` and a self-contained
`<run_dir>/report.html` (every image embedded), readable in a browser with no server.
It reads the run's saved outputs and, being on the grader's side, the answers.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import jinja2
import matplotlib

matplotlib.use("Agg")      # no display: figures go straight to PNG
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from .fitting.data import load_public  # noqa: E402
from .prepared import load_test_ids, read_prepared  # noqa: E402
from .fitting.ensemble import decide, probabilities as ensemble_probabilities  # noqa: E402
from .fitting.members import read_pseudo_labels  # noqa: E402
from .fitting.train import read_training_log  # noqa: E402
from .grading.metrics import clopper_pearson  # noqa: E402
from .record import RunRecord  # noqa: E402
from .grading.metrics import get_metric  # noqa: E402
from .workspace import CompetitionPaths  # noqa: E402
from .errors import RunStateError  # noqa: E402
from .workspace import atomic_write_text  # noqa: E402
from .grading.submission import read_solution  # noqa: E402

DPI = 100
MAX_CLASS_ROWS = 20         # figures with a row per class show at most this many classes


@dataclass
class Figure:
    name: str           # file stem, e.g. "confusion"
    title: str
    caption: str


def _save(fig: plt.Figure, folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / f"{name}.png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def image_grid(images: np.ndarray, titles: list[str] | None = None, columns: int = 12,
               row_labels: list[str] | None = None, title_colors: list[str] | None = None) -> plt.Figure:
    """Images (N, H, W, C), grey or colour, in a grid, optional title over each and label per row.

    One mosaic drawn by one `imshow`, titles and labels as text on the same axes: an Axes per image
    cost matplotlib about 10 ms each (a third of a digits run's report)."""
    count = max(len(images), 1)
    rows = -(-count // columns)
    height, width, channels = images.shape[1:] if len(images) else (1, 1, 1)
    gap_x = max(1, width // 10)
    gap_y = max(1, height // (2 if titles else 10))     # room over each image for its title
    grey = channels == 1
    blank = 0 if grey else 255                          # white in either colour map
    mosaic = np.full((rows * (height + gap_y), columns * (width + gap_x), channels), blank, np.uint8)
    for i, image in enumerate(images):
        y, x = (i // columns) * (height + gap_y) + gap_y, (i % columns) * (width + gap_x)
        mosaic[y:y + height, x:x + width] = image
    fig, ax = plt.subplots(figsize=(columns * 0.9, rows * (1.15 if titles else 0.9)))
    ax.imshow(mosaic[..., 0] if grey else mosaic, cmap="gray_r" if grey else None, vmin=0, vmax=255,
              interpolation="nearest")
    ax.set_axis_off()
    colors = title_colors or ["black"] * count
    for i, title in enumerate(titles or []):
        y, x = (i // columns) * (height + gap_y) + gap_y, (i % columns) * (width + gap_x) + width / 2
        ax.text(x, y - 0.1 * gap_y, title, fontsize=7, color=colors[i], ha="center", va="bottom")
    for r, label in enumerate((row_labels or [])[:rows]):
        ax.text(-gap_x, r * (height + gap_y) + gap_y + height / 2, label, fontsize=9, ha="right", va="center")
    return fig


def per_class_samples(images: np.ndarray, labels: np.ndarray, num_classes: int, per_class: int
                      ) -> tuple[np.ndarray, list[int]]:
    """The first `per_class` images of each class, padded with blanks; and how many were real."""
    grid, counts = [], []
    for k in range(num_classes):
        chosen = images[(labels[:, k] == 1) if labels.ndim == 2 else (labels == k)][:per_class]
        counts.append(len(chosen))
        blanks = np.zeros((per_class - len(chosen), *images.shape[1:]), np.uint8)
        grid.append(np.concatenate([chosen, blanks]))
    return np.concatenate(grid), counts


def nhwc(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) tensor -> (N, H, W, C) array, as images are drawn."""
    return images.permute(0, 2, 3, 1).numpy()


def data_figures(public, out: Path, notes: list[str]) -> list[Figure]:
    k = public.num_classes
    shown = min(k, MAX_CLASS_ROWS)
    train_images, train_labels = nhwc(public.train_images), public.train_labels.numpy()
    grid, _ = per_class_samples(train_images, train_labels, shown, 12)
    _save(image_grid(grid, row_labels=list(public.classes[:shown])), out, "train_samples")
    _save(image_grid(nhwc(public.test_images[:48])), out, "test_samples")
    # images per class; in a multi-label competition, images having each label
    counts = train_labels.sum(0) if train_labels.ndim == 2 else np.bincount(train_labels, minlength=k)
    fig, ax = plt.subplots(figsize=(max(7, 0.12 * k), 2.8))
    ax.bar(range(k), counts, color="#4c72b0")
    ax.set_xticks(range(k), public.classes, rotation=30 if max(map(len, public.classes)) > 2 else 0,
                  fontsize=8 if k <= 30 else 5)
    ax.set_ylabel("training images")
    ax.axhline(counts.mean(), color="grey", lw=0.8, ls="--")
    ax.set_title(f"class counts: min {counts.min():,}, max {counts.max():,}", fontsize=10)
    _save(fig, out, "class_counts")
    curation = "; ".join(notes) if notes else "no curation notes"
    more = "" if shown == k else f" The first {shown} of {k} classes."
    return [Figure("train_samples", "Training images, 12 per class", "One row per class, in file order." + more),
            Figure("test_samples", "Test images", "The first 48 test images, in submission order, unlabelled."),
            Figure("class_counts", "Class balance (seed 004's check)", curation)]


def curve_figure(run_dir: Path, record: RunRecord, out: Path) -> Figure | None:
    """Each trained member's curves, read from its training log (the run's `logger`); None where no
    member left one (`logger = none`, or probe members alone)."""
    panels = [("train_loss", "training loss"), ("val_loss", "validation loss"), ("val_acc", "validation accuracy"),
              ("lr", "learning rate")]
    logs = [(member, read_training_log(run_dir / member.folder)) for r in record.rounds for member in r.members]
    logs = [(member, rows) for member, rows in logs if rows]
    if not logs:
        return None
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.2))
    for member, rows in logs:
        label = member.folder.replace("/", " ")
        style = "-" if member.round == 0 else "--"
        for ax, (key, _) in zip(axes, panels):
            points = [(row["epoch"], row[key]) for row in rows if key in row]
            ax.plot([e for e, _ in points], [v for _, v in points], style, lw=1.2, label=label)
    for ax, (_, title) in zip(axes, panels):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[2].set_ylim(max(0.0, axes[2].get_ylim()[0]), 1.0)
    if len(axes[3].get_lines()) <= 12:
        axes[3].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    _save(fig, out, "training_curves")
    return Figure("training_curves", "Training curves per member, from their logs",
                  "Solid: round 0; dashed: pseudo-label rounds. Accuracy and loss on each member's validation fold, "
                  "as each member's logger wrote them (its folder's logs/).")


def confusion_figure(confusion: np.ndarray, classes: tuple[str, ...], out: Path) -> Figure:
    normalised = confusion / confusion.sum(axis=1, keepdims=True).clip(min=1)
    k = len(classes)
    side = max(5.6, 0.12 * k)
    fig, axes = plt.subplots(1, 2, figsize=(2.3 * side, side))
    panels = ((axes[0], confusion, "counts", "d"), (axes[1], normalised, "share of each true class", ".2f"))
    for ax, matrix, title, fmt in panels:
        ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
        if k <= MAX_CLASS_ROWS:     # beyond that the numbers would not be legible
            for (i, j), value in np.ndenumerate(matrix):
                if value:
                    ax.text(j, i, format(value, fmt), ha="center", va="center", fontsize=7,
                            color="white" if normalised[i, j] > 0.5 else "black")
        ax.set_xticks(range(k), classes, rotation=45, ha="right", fontsize=8 if k <= 30 else 4)
        ax.set_yticks(range(k), classes, fontsize=8 if k <= 30 else 4)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    _save(fig, out, "confusion")
    return Figure("confusion", "Confusion matrix of the submission", "All test rows, public and private.")


def mistake_figures(test_images: np.ndarray, probabilities: np.ndarray, truth: np.ndarray,
                    classes: tuple[str, ...], out: Path, per_class: int = 4) -> list[Figure]:
    predicted, confidence = probabilities.argmax(1), probabilities.max(1)
    wrong = np.flatnonzero(predicted != truth)
    wrong = wrong[np.argsort(-confidence[wrong])][:60]
    titles = [f"{classes[truth[i]]}→{classes[predicted[i]]}" for i in wrong]
    _save(image_grid(test_images[wrong], titles), out, "misclassified")

    shown = min(len(classes), MAX_CLASS_ROWS)
    tiles, tile_titles, colours = [], [], []
    for k in range(shown):
        for want_right in (True, False):
            rows = np.flatnonzero((predicted == k) & ((truth == k) == want_right))
            rows = rows[np.argsort(-confidence[rows])][:per_class]
            for i in range(per_class):
                if i < len(rows):
                    tiles.append(test_images[rows[i]])
                    truth_note = "" if want_right else f" ({classes[truth[rows[i]]]})"
                    tile_titles.append(f"{confidence[rows[i]]:.2f}{truth_note}")
                    colours.append("green" if want_right else "red")
                else:
                    tiles.append(np.zeros(test_images.shape[1:], np.uint8))
                    tile_titles.append("")
                    colours.append("black")
    _save(image_grid(np.stack(tiles), tile_titles, columns=2 * per_class, row_labels=list(classes[:shown]),
                     title_colors=colours), out, "most_confident")
    return [Figure("misclassified", f"Misclassified test images ({len(np.flatnonzero(predicted != truth))} in all)",
                   "Most confident mistakes first; each title is true→predicted."),
            Figure("most_confident", "Most confident right and wrong answers per predicted class (seed 001's analysis)",
                   f"Per row: the {per_class} most confident correct predictions of that class (green), then the "
                   f"{per_class} most confident wrong ones (red, true class in brackets). Titles are probabilities.")]


def pseudo_figures(run_dir: Path, record: RunRecord, test_images: np.ndarray, truth: np.ndarray,
                   classes: tuple[str, ...], out: Path) -> tuple[list[Figure], list[dict]]:
    """Pseudo-labels per class and round (read as the members read them), the wrong ones shown; their
    precision is the record's, measured once by publish."""
    rounds = [r for r in record.rounds if r.pseudo_labels]
    if not rounds:
        return [], []
    k = len(classes)
    fig, ax = plt.subplots(figsize=(7, 2.8))
    width = 0.8 / len(rounds)
    rows, wrong_tiles, wrong_titles = [], [], []
    for r, rnd in enumerate(rounds):
        index, labels = read_pseudo_labels(run_dir / f"round{rnd.round}" / "pseudo_labels.csv", len(test_images))
        index, labels = index.numpy(), labels.numpy()
        counts = np.bincount(labels, minlength=k)
        ax.bar(np.arange(k) + r * width, counts, width, label=f"round {rnd.round}")
        rows.append({"round": rnd.round, "used": len(labels), "precision": rnd.pseudo_precision,
                     "per_class": counts.tolist()})
        for i in np.flatnonzero(labels != truth[index])[:40]:
            wrong_tiles.append(test_images[index[i]])
            wrong_titles.append(f"{classes[labels[i]]} (is {classes[truth[index[i]]]})")
    ax.set_xticks(np.arange(k) + 0.4 - width / 2, classes, fontsize=8 if k <= 30 else 4)
    ax.set_ylabel("pseudo-labels")
    ax.legend(fontsize=8)
    _save(fig, out, "pseudo_counts")
    figures = [Figure("pseudo_counts", "Pseudo-labels per class and round", "Test images the ensemble labelled "
                      "confidently enough to train on.")]
    if wrong_tiles:
        _save(image_grid(np.stack(wrong_tiles), wrong_titles), out, "pseudo_wrong")
        figures.append(Figure("pseudo_wrong", f"Wrong pseudo-labels ({len(wrong_tiles)} shown)",
                              "Title: the pseudo-label, then the true class. "
                              "Measured after training, never used by it."))
    return figures, rows


def score_rows(record: RunRecord) -> list[dict]:
    """Members, round ensembles and the submission: validation / out-of-fold accuracy, public and
    private scores (each with its interval), wall time; for the report's table."""
    def scored(name: str) -> dict:
        s = record.scores.get(name)
        return {"public": None if s is None else s.public, "private": None if s is None else s.private}

    rows = []
    for rnd in record.rounds:
        for m in rnd.members:
            low, high = clopper_pearson(round(m.val_acc * m.val_size), m.val_size)
            rows.append({"stage": m.name, "kind": "member", "validation": {"value": m.val_acc, "low": low, "high": high},
                         "wall": f"{m.wall_s:.1f}s", **scored(m.name)})
        extra = "" if rnd.pseudo_labels is None else f" (+{rnd.pseudo_labels:,} pseudo-labels)"
        extra += (", TTA" if rnd.tta else "") + (", with earlier members" if rnd.pooled else "")
        rows.append({"stage": f"round {rnd.round} ensemble{extra}", "kind": "ensemble",
                     "validation": rnd.oof, "wall": f"{rnd.train_s + rnd.ensemble_s:.1f}s",
                     **scored(f"round {rnd.round} ensemble")})
    rows.append({"stage": f"submission (round {record.chosen_round})", "kind": "submission", "validation": record.oof,
                 "wall": f"{record.wall_s:.0f}s", **scored("submission")})
    return rows


TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("competition", "templates"), autoescape=True)


def interval(value) -> str:
    """An estimate (or its dict) as `0.9912 (0.9881-0.9941)`; "-" where there is none."""
    if value is None:
        return "-"
    get = value.get if isinstance(value, dict) else lambda k: getattr(value, k)
    if get("value") is None:
        return "-"
    low, high = get("low"), get("high")
    return f"{get('value'):.4f}" + ("" if low is None or high is None else f" ({low:.4f}-{high:.4f})")


def embedded(out: Path, figure: Figure) -> dict:
    return {"name": figure.name, "title": figure.title, "caption": figure.caption,
            "png": base64.b64encode((out / f"{figure.name}.png").read_bytes()).decode()}


def write_report(run_dir: Path, paths: CompetitionPaths) -> Path:
    """Write the figures and report.html for a finished run from its record; returns the HTML path."""
    run_dir = Path(run_dir)
    out = run_dir / "report"
    record = RunRecord.read(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    info = read_prepared(paths.public)
    if record.fingerprint != info.fingerprint:
        raise RunStateError(f"{paths.root} was prepared again with another split since run {run_dir.name}: "
                            f"its logits no longer match these test images, so no report is written")
    public = load_public(paths.public)
    classes = public.classes
    height, width, channels = info.stored_shape
    metric = get_metric(info.metric)
    curves = curve_figure(run_dir, record, out)
    sections = [{"title": "Data", "figures": data_figures(public, out, list(info.notes)),
                 "text": f"{info.train_size:,} training and {info.test_size:,} test images, {height}x{width} "
                         f"{'grey' if channels == 1 else 'colour'}, {len(classes)} classes, scored by {metric.name} "
                         f"({metric.direction}); test split: {info.split}."},
                {"title": "Training", "figures": [curves] if curves else [], "scores": score_rows(record)}]
    submission = record.submission
    if paths.has_answers() and record.sealed:
        sections.append({"title": "Submission", "figures": [], "text": "This competition is sealed: the confusion "
                         "matrix, mistakes and pseudo-label precision read private rows, so they appear once `python "
                         "-m competition select` has picked the final submissions (then run `report` again)."})
    elif submission is not None:
        per_class = [{"name": c, "estimate": e} for c, e in zip(classes, submission.per_class)]
        figures = [] if submission.confusion is None else \
            [confusion_figure(np.array(submission.confusion), classes, out)]
        sections.append({"title": "Submission", "figures": figures, "per_class": per_class,
                         "per_class_kind": "label" if info.multi_label else "class",
                         "text": f"All test rows: accuracy {interval(submission.accuracy)}"
                                 + ("" if metric.name == "accuracy" else
                                    f"; {metric.name} {interval(submission.overall)}") + "."})
        if not info.multi_label:
            solution = read_solution(paths.solution, info.submission, load_test_ids(paths.public))
            probabilities = ensemble_probabilities(torch.load(run_dir / "test_logits.pt", weights_only=True)
                                                   ["submission"], record.temperature)
            test_images = nhwc(public.test_images)
            sections.append({"title": "Mistakes", "figures": mistake_figures(
                test_images, decide(probabilities, record.decision), solution.labels, classes, out)})
            figures, rows = pseudo_figures(run_dir, record, test_images, solution.labels, classes, out)
            if rows:
                sections.append({"title": "Pseudo-labels", "figures": figures, "pseudo": rows,
                                 "all_right": not any(f.name == "pseudo_wrong" for f in figures)})
    else:
        sections.append({"title": "Submission", "figures": [], "text": record.refused or
                         "No answers for this competition: nothing to score."})
    for section in sections:
        section["figures"] = [embedded(out, f) for f in section["figures"]]
    page = TEMPLATES.get_template("report.html").render(
        record=record, competition=info.name, config=json.dumps(config, indent=2), sections=sections,
        pseudo_rounds=len(record.rounds) - 1, interval=interval, metric=metric.name)
    atomic_write_text(run_dir / "report.html", page)
    return run_dir / "report.html"
