"""Per-run report: the data, training curves, scores, confusion, mistakes and pseudo-labels.

`write_report(run_dir, paths)` writes PNGs into `<run_dir>/report/` and a self-contained
`<run_dir>/report.html` (every image embedded), readable in a browser with no server.
It reads the run's saved outputs and, being on the grader's side, the answers.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")      # no display: figures go straight to PNG
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from .fitting.data import load_public  # noqa: E402
from .prepared import load_test_ids, read_prepared  # noqa: E402
from .fitting.ensemble import decide, probabilities as ensemble_probabilities  # noqa: E402
from .grading.grader import accuracy_of, clopper_pearson, score_probabilities  # noqa: E402
from .grading.metrics import get_metric  # noqa: E402
from .workspace import CompetitionPaths  # noqa: E402
from .errors import RunStateError  # noqa: E402
from .grading.rules import read_rules  # noqa: E402
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


def _run_inputs(run_dir: Path) -> tuple[dict, dict, dict[str, torch.Tensor]]:
    config = json.loads((run_dir / "config.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    logits = torch.load(run_dir / "test_logits.pt", weights_only=True)
    return config, metrics, logits


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
            Figure("class_counts", "Class balance (seed 004's check)", html.escape(curation))]


def curve_figure(run_dir: Path, out: Path) -> Figure:
    panels = [("train_loss", "training loss"), ("val_loss", "validation loss"), ("val_acc", "validation accuracy"),
              ("lr", "learning rate")]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.2))
    for result_path in sorted(run_dir.glob("round*/*/result.json")):
        history = json.loads(result_path.read_text())["history"]
        label = f"{result_path.parent.parent.name} {result_path.parent.name}"
        style = "-" if result_path.parent.parent.name == "round0" else "--"
        for ax, (key, _) in zip(axes, panels):
            ax.plot([h["epoch"] for h in history], [h[key] for h in history], style, lw=1.2, label=label)
    for ax, (_, title) in zip(axes, panels):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[2].set_ylim(max(0.0, axes[2].get_ylim()[0]), 1.0)
    if len(axes[3].get_lines()) <= 12:
        axes[3].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    _save(fig, out, "training_curves")
    return Figure("training_curves", "Training curves per member",
                  "Solid: round 0; dashed: pseudo-label rounds. Accuracy and loss on each member's validation fold.")


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


def pseudo_figures(run_dir: Path, test_images: np.ndarray, truth: np.ndarray, classes: tuple[str, ...],
                   out: Path) -> tuple[list[Figure], list[dict]]:
    tables = sorted(run_dir.glob("round*/pseudo_labels.csv"))
    if not tables:
        return [], []
    k = len(classes)
    fig, ax = plt.subplots(figsize=(7, 2.8))
    width = 0.8 / len(tables)
    rows, wrong_tiles, wrong_titles = [], [], []
    for r, table in enumerate(tables):
        frame = pd.read_csv(table, dtype={"ImageId": np.int64, "Label": np.int64})
        index, labels = frame["ImageId"].to_numpy() - 1, frame["Label"].to_numpy()
        ax.bar(np.arange(k) + r * width, np.bincount(labels, minlength=k), width, label=table.parent.name)
        correct = labels == truth[index]
        rows.append({"round": table.parent.name, "used": len(frame),
                     "precision": float(correct.mean()) if len(frame) else float("nan"),
                     "per_class": np.bincount(labels, minlength=k).tolist()})
        for i in np.flatnonzero(~correct)[:40]:
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


def score_table(metrics: dict) -> str:
    """Members, round ensembles and the submission: validation / out-of-fold, public, private."""
    def ci(value: float | None, low: float, high: float) -> str:
        return "-" if value is None else f"{value:.4f} <small>({low:.4f}–{high:.4f})</small>"

    def val_cell(acc: float, size: int) -> str:
        return ci(acc, *clopper_pearson(round(acc * size), size))

    scores = metrics.get("scores", {})

    def scored(name: str) -> str:
        s = scores.get(name)
        if not s:
            return "<td>-</td><td>-</td>"
        return f"<td>{ci(s['public'], *s['public_ci'])}</td><td>{ci(s['private'], *s['private_ci'])}</td>"

    metric = metrics.get("metric", "accuracy")
    lines = [f"<table><tr><th>stage</th><th>validation / out-of-fold accuracy</th><th>public {metric}</th>"
             f"<th>private {metric}</th><th>wall time</th></tr>"]
    for rnd in metrics["rounds"]:
        for member in rnd["members"]:
            val = val_cell(member["val_acc"], member["val_size"])
            lines.append(f"<tr><td>{html.escape(member['name'])}</td><td>{val}</td>{scored(member['name'])}"
                         f"<td>{member['wall_s']:.1f}s</td></tr>")
        name = f"round {rnd['round']} ensemble"
        extra = "" if rnd["pseudo_labels"] is None else f" (+{rnd['pseudo_labels']:,} pseudo-labels)"
        tta = ", TTA" if rnd["tta"] else ""
        lines.append(f"<tr class='ens'><td>{name}{extra}{tta}</td><td>{ci(rnd['oof_acc'], *rnd['oof_ci'])}</td>"
                     f"{scored(name)}<td>{rnd['train_s'] + rnd['ensemble_s']:.1f}s</td></tr>")
    cv = metrics["cv"]
    lines.append(f"<tr class='ens'><td><b>submission</b> (round {metrics['chosen_round']})</td>"
                 f"<td>{ci(cv['accuracy'], *cv['accuracy_ci'])}</td>{scored('submission')}"
                 f"<td>{metrics['wall_s']:.0f}s</td></tr></table>"
                 f"<p>CV: {html.escape(cv['kind'])} {html.escape(cv['metric'])} over {cv['total']:,} labelled images, "
                 f"{ci(cv['value'], *cv['ci'])} ({html.escape(cv['interval'])} interval): the score to trust without "
                 "the answers; every choice of the run (checkpoints, TTA, weights, rounds) was made on out-of-fold "
                 "predictions.</p>")
    return "\n".join(lines)


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0; font-size: .9em; }
td, th { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
td:first-child, th:first-child { text-align: left; }
tr.ens { background: #f3f6fb; } small { color: #666; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .85em; color: #555; } .meta { color: #555; font-size: .9em; }
"""


def write_report(run_dir: Path, paths: CompetitionPaths) -> Path:
    """Write the figures and report.html for a finished run; returns the HTML path."""
    run_dir = Path(run_dir)
    out = run_dir / "report"
    config, metrics, logits = _run_inputs(run_dir)
    info = read_prepared(paths.public)
    if metrics.get("fingerprint") and metrics["fingerprint"] != info.fingerprint:
        raise RunStateError(f"{paths.root} was prepared again with another split since run {run_dir.name}: "
                            f"its logits no longer match these test images, so no report is written")
    sealed = read_rules(paths.root).hides_private
    public = load_public(paths.public)
    classes = public.classes
    test_images = nhwc(public.test_images)
    height, width, channels = info.image_shape
    metric = get_metric(info.metric)
    sections: list[tuple[str, list[Figure], str]] = []
    sections.append(("Data", data_figures(public, out, list(info.notes)),
                     f"<p>{info.train_size:,} training and {info.test_size:,} test images, "
                     f"{height}x{width} {'grey' if channels == 1 else 'colour'}, {len(classes)} classes, scored by "
                     f"{metric.name} ({metric.direction}); test split: {html.escape(info.split)}.</p>"))
    sections.append(("Training", [curve_figure(run_dir, out)], score_table(metrics)))

    final_logits = logits["submission"]
    if paths.has_answers() and sealed:
        sections.append(("Submission", [], "<p>This competition is sealed: the confusion matrix, mistakes and "
                                           "pseudo-label precision read private rows, so they appear once "
                                           "<code>python -m competition select</code> has picked the final "
                                           "submissions (then run <code>report</code> again).</p>"))
    elif paths.has_answers() and info.multi_label:
        solution = read_solution(paths.solution, info.submission, load_test_ids(paths.public))
        probabilities = ensemble_probabilities(final_logits, metrics.get("temperature", 1.0),
                                               metrics.get("decision", "argmax"), multi_label=True)
        score = score_probabilities(info.submission.as_submitted(probabilities), solution, metric)
        per_label = "".join(f"<tr><td>{html.escape(c)}</td><td>{a.value:.4f} <small>({a.low:.4f}–{a.high:.4f})"
                            f"</small></td><td>{a.correct:,}/{a.total:,}</td></tr>"
                            for c, a in zip(classes, score.per_class))
        sections.append(("Submission", [], f"<p>All test rows: {metric.name} {score.overall}</p>"
                         f"<table><tr><th>label</th><th>accuracy at probability 1/2</th><th>right</th></tr>"
                         f"{per_label}</table>"))
    elif paths.has_answers():
        form = info.submission
        solution = read_solution(paths.solution, form, load_test_ids(paths.public))
        probabilities = ensemble_probabilities(final_logits, metrics.get("temperature", 1.0),
                                               multi_label=info.multi_label)
        submitted = form.as_submitted(decide(probabilities, metrics.get("decision", "argmax")))
        predicted = submitted.argmax(1)
        score = score_probabilities(submitted, solution, metric)
        per_class = "".join(f"<tr><td>{html.escape(c)}</td><td>{a.value:.4f} <small>({a.low:.4f}–{a.high:.4f})"
                            f"</small></td><td>{a.correct:,}/{a.total:,}</td></tr>"
                            for c, a in zip(classes, score.per_class))
        sections.append(("Submission", [confusion_figure(score.confusion, classes, out)],
                         f"<p>All test rows: accuracy {accuracy_of(predicted == solution.labels)}"
                         + ("" if metric.name == "accuracy" else f"; {metric.name} {score.overall}") + "</p>"
                         f"<table><tr><th>class</th><th>accuracy</th><th>right</th></tr>{per_class}</table>"))
        sections.append(("Mistakes", mistake_figures(test_images, probabilities, solution.labels, classes, out), ""))
        figures, rows = pseudo_figures(run_dir, test_images, solution.labels, classes, out)
        if rows:
            table = "".join(f"<tr><td>{r['round']}</td><td>{r['used']:,}</td><td>{r['precision']:.4f}</td>"
                            f"<td>{r['per_class']}</td></tr>" for r in rows)
            all_right = "" if any(f.name == "pseudo_wrong" for f in figures) else "<p>Every pseudo-label was right.</p>"
            sections.append(("Pseudo-labels", figures, "<table><tr><th>round</th><th>used</th><th>precision</th>"
                                                       f"<th>per class</th></tr>{table}</table>{all_right}"))
    else:
        sections.append(("Submission", [], "<p>No answers for this competition: nothing to score.</p>"))

    body = [f"<h1>Run {html.escape(run_dir.name)}</h1>",
            f"<p class='meta'>{html.escape(info.name)} · model {html.escape('+'.join(config['models']))} · "
            f"{config['folds']} fold(s) x {config['seeds']} seed(s) · {len(metrics['rounds']) - 1} pseudo-label "
            f"round(s) of at most {config['pseudo_rounds']} · {config['epochs']} epochs max · "
            f"CV {metrics['cv']['metric']} {metrics['cv']['value']:.4f} ({html.escape(metrics['cv']['kind'])}) · "
            f"device {metrics.get('device', '?')}</p>"]
    for title, figures, text in sections:
        body.append(f"<h2>{html.escape(title)}</h2>{text}")
        for fig in figures:
            encoded = base64.b64encode((out / f"{fig.name}.png").read_bytes()).decode()
            body.append(f"<figure><img alt='{html.escape(fig.title)}' data-file='report/{fig.name}.png' "
                        f"src='data:image/png;base64,{encoded}'><figcaption><b>{html.escape(fig.title)}.</b> "
                        f"{fig.caption}</figcaption></figure>")
    body.append(f"<h2>Config</h2><pre>{html.escape(json.dumps(config, indent=2))}</pre>")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(run_dir.name)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>")
    atomic_write_text(run_dir / "report.html", page)
    return run_dir / "report.html"
