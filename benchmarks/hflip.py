"""Horizontal flips, measured on one validation fold (never on test answers): does mirroring pay?

    python -m benchmarks.hflip [--competition fashion-mnist] [--fold 0]

Trains the default model on fold `--fold` of the default 4 folds twice, with `augment.hflip` off and
on (the same seed), and reports the fold's validation accuracy from the plain view and with the
test-time views (their mirrors too when flips are on). A competition's `hflip` setting is a fact
about its images (a mirrored shirt is a shirt; a mirrored 2 is not a 2); this measures whether the
augmentation it allows is also worth having.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from competition.config import Augmentation, RunConfig
from competition.members import fold_data
from competition.metrics import accuracy_of
from competition.models import resolve_models
from competition.predict import predict, tta_views
from competition.train import train_model, training_device

from .common import add_output_flag, command, public_data, write_result


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--competition", default="fashion-mnist")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="instead of run's default (for quick checks)")
    add_output_flag(parser)
    args = parser.parse_args(argv)
    public, _ = public_data(args.competition)
    rows = []
    for hflip in ("off", "on"):
        cfg = RunConfig(competition=args.competition, augment=Augmentation(hflip=hflip),
                        **({"epochs": args.epochs} if args.epochs else {}))
        model = resolve_models(cfg.models, public.image_shape[0])[0]
        data, _ = fold_data(public, cfg, args.fold, training_device())
        start = time.perf_counter()
        trained = train_model(data, cfg, model, seed=7, out_dir=Path(tempfile.mkdtemp(prefix="bench-hflip-")))
        views = tta_views(hflip == "on")
        logits = predict(trained.module, data.val_images, views)
        labels = data.val_labels.cpu().numpy()
        plain, tta = accuracy_of(logits[0].argmax(1).numpy() == labels), \
            accuracy_of(logits.mean(0).argmax(1).numpy() == labels)
        rows.append({"hflip": hflip, "val_acc": plain.value, "val_ci": [plain.low, plain.high],
                     "val_acc_tta": tta.value, "tta_views": len(views), "val_rows": plain.total,
                     "best_epoch": trained.best_epoch, "wall_s": time.perf_counter() - start})
        print(rows[-1])
    write_result(f"hflip_{args.competition}", rows, {"command": command("hflip", argv), "model": model}, args.out)
    return rows


if __name__ == "__main__":
    main()
