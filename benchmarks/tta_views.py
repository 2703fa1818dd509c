"""Test-time view sets compared on out-of-fold accuracy, from a finished run's checkpoints.

    python -m benchmarks.tta_views RUN_DIR [--round 0]

No member is retrained: each round-R member's best checkpoint predicts the labelled rows it
validated under every candidate view, and each set of views is scored by the ensemble's OOF
accuracy over all labelled images (the test answers are never read). Beside each set: the rows it
gets right that the four straight shifts get wrong, and the reverse (McNemar's b and c).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from competition.fitting.members import load_logits
from competition.grading.metrics import accuracy_of
from competition.fitting.predict import View, load_classifier, predict

from .common import finished_run_args, write_run_result

STRAIGHT = (View(1, 0), View(-1, 0), View(0, 1), View(0, -1))
DIAGONAL = (View(1, 1), View(1, -1), View(-1, 1), View(-1, -1))
TWO_PIXELS = (View(2, 0), View(-2, 0), View(0, 2), View(0, -2))
VIEW_SETS: dict[str, tuple[View, ...]] = {
    "identity": (View(),),
    "4 straight shifts": (View(), *STRAIGHT),
    "8 shifts (3x3, the default)": (View(), *STRAIGHT, *DIAGONAL),
    "4 straight + 4 two-pixel shifts": (View(), *STRAIGHT, *TWO_PIXELS),
    "all 12 shifts": (View(), *STRAIGHT, *DIAGONAL, *TWO_PIXELS),
}
REFERENCE = "4 straight shifts"


def mirrored(views: tuple[View, ...]) -> tuple[View, ...]:
    return views + tuple(View(v.dx, v.dy, mirror=True) for v in views)


def view_sets(mirror: bool, side: int) -> dict[str, tuple[View, ...]]:
    """The candidates: the shift sets above; where training mirrored images, the mirror alone (the
    default there) and the shifts with their mirrors, by one pixel and by 1/28 of the side."""
    if not mirror:
        return VIEW_SETS
    step = max(1, round(side / 28))
    shifts = VIEW_SETS["8 shifts (3x3, the default)"]
    sets = {"identity": (View(),), "identity + mirror (the default)": mirrored((View(),)),
            REFERENCE: VIEW_SETS[REFERENCE], "4 straight shifts + mirrors": mirrored(VIEW_SETS[REFERENCE]),
            "8 shifts + mirrors (one pixel)": mirrored(shifts)}
    if step > 1:
        sets[f"8 shifts + mirrors ({step} px)"] = mirrored(tuple(View(v.dx * step, v.dy * step) for v in shifts))
    return sets


def oof_logits_by_view(member_dirs: list[Path], public, views: tuple[View, ...]) -> dict[str, torch.Tensor]:
    """Each view's out-of-fold logits (N, K), the mean over the members that validated a row (seeds);
    rows no member validated are NaN."""
    total = {v.name: torch.zeros(len(public.train_labels), public.num_classes) for v in views}
    count = torch.zeros(len(public.train_labels), 1)
    for member in member_dirs:
        rows = load_logits(member)["val_index"]
        module = load_classifier(member / "best.ckpt", torch.device("cpu"))
        for view, logits in zip(views, predict(module, public.train_images[rows], views)):
            total[view.name][rows] += logits
        count[rows] += 1
    return {name: summed / count for name, summed in total.items()}      # 0/0 -> NaN


def main(argv: list[str] | None = None) -> list[dict]:
    _, args, public = finished_run_args(__doc__.splitlines()[0], argv)
    members = sorted(p for p in (args.run_dir / f"round{args.round}").iterdir() if (p / "best.ckpt").is_file())
    config = json.loads((args.run_dir / "config.json").read_text())
    mirror = config["augment"]["hflip"] == "on" or (config["augment"]["hflip"] == "auto" and public.hflip)
    candidates = view_sets(mirror, min(public.image_shape[1:]))
    every_view = tuple(dict.fromkeys(v for views in candidates.values() for v in views))
    by_view = oof_logits_by_view(members, public, every_view)
    labels = public.train_labels
    right = {}
    for name, views in candidates.items():
        mean = torch.stack([by_view[v.name] for v in views]).mean(0)
        right[name] = (mean.argmax(1) == labels)[~torch.isnan(mean).any(1)]
    rows = []
    for name, views in candidates.items():
        estimate = accuracy_of(right[name].numpy())
        b = int((right[name] & ~right[REFERENCE]).sum())
        c = int((right[REFERENCE] & ~right[name]).sum())
        rows.append({"views": name, "count": len(views), "oof": estimate.value, "oof_ci": [estimate.low, estimate.high],
                     "oof_rows": estimate.total, f"right_only_vs_{REFERENCE}": b, f"wrong_only_vs_{REFERENCE}": c})
        print(rows[-1], flush=True)
    write_run_result("tta_views", public, rows, argv, args, [m.name for m in members])
    return rows


if __name__ == "__main__":
    main()
