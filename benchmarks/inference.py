"""Figure 4: inference throughput of the ensemble on the test set (images/s), and what folding the
batch norms into the convolutions and the batch size each buy, side by side.

    python -m benchmarks.inference [--competition mnist-5k] [--seeds 3] [--model fastnet-wide] [--views 9]

Throughput does not depend on the weights, so freshly built models are timed. The arms (`ARMS`:
batch norms folded or not, batches of the current pixel budget or of the previous one) take turns
in every repeat, so drift on a shared machine falls on all of them alike; each reports its median
and its min-max over repeats.
"""

from __future__ import annotations

import argparse
import statistics
import time

from competition.fitting.module import Classifier
from competition.fitting.predict import PIXELS_PER_BATCH, TTA_VIEWS, predict, prediction_batch
from competition.fitting.device import training_device

from .common import add_output_flag, command, public_data, training_data, write_result

# name -> (fold the batch norms, pixels a batch); the previous default was 2 ** 19 pixels, unfolded
ARMS = {"folded, current batches": (True, PIXELS_PER_BATCH), "unfolded, current batches": (False, PIXELS_PER_BATCH),
        "folded, previous batches": (True, 2 ** 19), "unfolded, previous batches (before)": (False, 2 ** 19)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--competition", default="mnist-5k")
    parser.add_argument("--model", default=None, help="instead of run's `auto` choice")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--views", type=int, default=1, help="test-time views a model predicts (up to 9)")
    parser.add_argument("--repeats", type=int, default=5)
    add_output_flag(parser)
    args = parser.parse_args(argv)
    cfg, data = training_data(args.competition, model=args.model)
    models = [Classifier.from_config(cfg, model=cfg.models[0], num_classes=data.num_classes,
                                     image_shape=data.image_shape, mean=data.mean, std=data.std,
                                     steps_per_epoch=1).to(data.train_images.device)
              for _ in range(args.seeds)]
    test_images = public_data(args.competition)[0].test_images.to(data.train_images.device)
    views = TTA_VIEWS[:args.views]
    height, width = test_images.shape[-2:]
    batches = {name: max(16, min(1024, pixels // (height * width))) for name, (_, pixels) in ARMS.items()}
    assert batches["folded, current batches"] == prediction_batch(height, width)
    for name, (fold, _) in ARMS.items():                                  # warm-up: each batch shape once
        predict(models[0], test_images, views, batch_size=batches[name], fold=fold)
    seconds: dict[str, list[float]] = {name: [] for name in ARMS}
    for _ in range(args.repeats):
        for name, (fold, _) in ARMS.items():
            start = time.perf_counter()
            for model in models:
                predict(model, test_images, views, batch_size=batches[name], fold=fold)
            seconds[name].append(time.perf_counter() - start)
    n = len(test_images) * len(views)
    before = statistics.median(seconds["unfolded, previous batches (before)"])
    rows = [{"device": training_device().type, "model": cfg.models[0], "arm": name, "batch": batches[name],
             "seeds": args.seeds, "images": n, "ensemble_img_s": n / statistics.median(times),
             "per_model_img_s": n * args.seeds / statistics.median(times),
             "per_model_min_max": [n * args.seeds / max(times), n * args.seeds / min(times)],
             "vs_before": before / statistics.median(times)} for name, times in seconds.items()]
    for row in rows:
        print(row, flush=True)
    write_result(f"inference_{cfg.models[0]}", rows, {"command": command("inference", argv)}, args.out)
    return rows[0]


if __name__ == "__main__":
    main()
