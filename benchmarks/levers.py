"""Speed levers, measured one at a time: training images/s of the harness's default recipe.

    python -m benchmarks.levers [--competition mnist-5k] [--epochs 2]

Each row changes one thing from the baseline, which is the harness as it ships (batch 128,
torch's default threads, fp32 on the CPU, channels_last, eager mode). Accuracy is not measured
here: a lever that wins on speed still has to hold accuracy in accuracy_per_second / time_to_accuracy before it is kept.
"""

from __future__ import annotations

import argparse
import time

import lightning as L
import torch

from competition.config import RunConfig
from competition.data import DeviceBatches
from competition.module import Classifier
from competition.train import precision_for

from .common import add_output_flag, command, training_data, write_result
from .throughput import AUG, _trainer


def rate(data, cfg: RunConfig, epochs: int, channels_last: bool = True, compiled: bool = False) -> float:
    batches = DeviceBatches(data.train_images, data.train_labels, cfg.batch_size, shuffle=True)
    module = Classifier(cfg.model, data.num_classes, data.image_size, data.mean, data.std, cfg.lr,
                        cfg.weight_decay, cfg.label_smoothing, cfg.schedule, epochs + 1, len(batches),
                        AUG.__dict__, cfg.model_kwargs, channels_last=channels_last)
    if compiled:
        module.net = torch.compile(module.net)
    device = data.train_images.device
    _trainer(1, device, precision_for(cfg, device)).fit(module, batches)        # warm-up (and compile)
    start = time.perf_counter()
    _trainer(epochs, device, precision_for(cfg, device)).fit(module, batches)
    return epochs * len(data.train_images) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--competition", default="mnist-5k")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--skip-compile", action="store_true", help="leave out torch.compile (slow to build)")
    add_output_flag(parser)
    args = parser.parse_args(argv)
    base, data = training_data(args.competition)
    L.seed_everything(0, verbose=False)
    default_threads = torch.get_num_threads()
    variants = [("baseline", base, {}), ("batch 64", base.replace(batch_size=64), {}),
                ("batch 256", base.replace(batch_size=256), {}), ("batch 512", base.replace(batch_size=512), {}),
                ("contiguous NCHW", base, {"channels_last": False})]
    if not args.skip_compile:
        variants.append(("torch.compile", base, {"compiled": True}))
    rows = []
    for name, cfg, options in variants:
        rows.append({"lever": name, "train_img_s": rate(data, cfg, args.epochs, **options)})
    torch.set_num_threads(1)
    rows.append({"lever": "1 thread", "train_img_s": rate(data, base, args.epochs)})
    torch.set_num_threads(default_threads)
    for row in rows:
        row["vs_baseline"] = row["train_img_s"] / rows[0]["train_img_s"]
    write_result("levers", rows, {"command": command("levers", argv)}, args.out)
    return rows


if __name__ == "__main__":
    main()
