"""Figure 2b: accuracy per second, the harness's default vs seed 001's VGG-BN recipe run the usual way.

    python -m benchmarks.accuracy_per_second [--ref-epochs 30] [--val-fraction 0.25]

Reference: `vgg-bn` (seed 001 model 9), Adam 1e-3, rotation 10 / zoom 0.1 / shear 0.1 augmentation
applied per sample in a DataLoader, the default Lightning loop, 30 epochs. Harness: `run`'s default
model and recipe, one seed. Both on the same validation split of mnist-5k (1,000 images), same process.
(a) wall time for each to first reach the reference's best 30-epoch validation accuracy, and the ratio;
(b) each one's best validation accuracy within the reference's 30-epoch wall time.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import lightning as L

from competition.config import Augmentation
from competition.fitting.train import train_model

from .common import add_output_flag, command, training_data, write_result
from .reference import ReferenceModule, loaders

SEED_001_AUG = Augmentation(rotation=10, shift=0.0, zoom=0.1, shear=0.1, hflip="off", crop=0.0)


class Timeline(L.Callback):
    """(elapsed seconds, val accuracy) after each validation."""

    def __init__(self) -> None:
        self.points: list[tuple[float, float]] = []
        self.start = time.perf_counter()

    def on_validation_epoch_end(self, trainer, module) -> None:
        if not trainer.sanity_checking:
            self.points.append((time.perf_counter() - self.start, float(trainer.callback_metrics["val_acc"])))


def reference_timeline(data, epochs: int) -> list[tuple[float, float]]:
    train, val = loaders(data.train_images.cpu(), data.train_labels.cpu(), data.val_images.cpu(),
                         data.val_labels.cpu(), SEED_001_AUG, data.mean, data.std, 128)
    L.seed_everything(0, verbose=False)
    timeline = Timeline()
    device = data.train_images.device
    L.Trainer(accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, max_epochs=epochs, logger=False,
              enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
              num_sanity_val_steps=0, callbacks=[timeline]).fit(
        ReferenceModule("vgg-bn", data.num_classes, data.image_shape[1]), train, val)
    return timeline.points


def first_time_at(points: list[tuple[float, float]], target: float) -> float | None:
    return next((t for t, acc in points if acc >= target), None)


def best_within(points: list[tuple[float, float]], seconds: float) -> float:
    return max((acc for t, acc in points if t <= seconds), default=float("nan"))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--competition", default="mnist-5k")
    parser.add_argument("--ref-epochs", type=int, default=30)
    parser.add_argument("--val-fraction", type=float, default=0.25)
    parser.add_argument("--epochs", type=int, default=None, help="harness epochs (default: RunConfig's)")
    add_output_flag(parser)
    args = parser.parse_args(argv)
    cfg, data = training_data(args.competition, val_fraction=args.val_fraction, patience=1000, epochs=args.epochs)

    reference = reference_timeline(data, args.ref_epochs)
    result = train_model(data, cfg, cfg.models[0], seed=0, out_dir=tempfile.mkdtemp(prefix="bench-harness-"))
    harness = [(h["elapsed_s"], h["val_acc"]) for h in result.history]

    target = max(acc for _, acc in reference)
    ref_total = reference[-1][0]
    t_ref, t_harness = first_time_at(reference, target), first_time_at(harness, target)
    rows = [
        {"recipe": f"reference vgg-bn x{args.ref_epochs} epochs", "best_val_acc": target,
         "time_to_ref_best_s": t_ref, "val_acc_at_ref_wall_time": best_within(reference, ref_total),
         "wall_s": ref_total},
        {"recipe": f"harness {cfg.models[0]} x{cfg.epochs} epochs", "best_val_acc": max(a for _, a in harness),
         "time_to_ref_best_s": t_harness, "val_acc_at_ref_wall_time": best_within(harness, ref_total),
         "wall_s": harness[-1][0]},
    ]
    extra = {"command": command("accuracy_per_second", argv), "val_size": len(data.val_labels),
             "speedup_to_ref_best": (t_ref / t_harness) if t_harness else None,
             "lead_at_ref_wall_time_pp": 100 * (rows[1]["val_acc_at_ref_wall_time"]
                                                - rows[0]["val_acc_at_ref_wall_time"]),
             "reference_timeline": reference, "harness_timeline": harness}
    write_result("accuracy_per_second", rows, extra, args.out)
    print(f"harness reaches the reference's best ({target:.4f}) "
          + (f"{extra['speedup_to_ref_best']:.1f}x sooner" if t_harness else "never within its epochs")
          + f"; at the reference's {ref_total:.0f}s it leads by {extra['lead_at_ref_wall_time_pp']:+.2f} pp")
    return extra


if __name__ == "__main__":
    main()
