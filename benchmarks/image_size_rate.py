"""Training images/s of a model at several image sizes: what `image_size = auto`'s limits rest on.

    python -m benchmarks.image_size_rate [--model timm/efficientnet_lite0] [--sizes 64 96 128 160 224]
                                         [--batch-size 32] [--steps 6] [--precision auto]

Synthetic uint8 images through the run's own `Classifier` (augmentation, normalisation, forward,
backward, AdamW step), timed after two warm-up steps; one process, the machine's threads.
"""

from __future__ import annotations

import argparse
import time

import torch

from competition.config import RunConfig
from competition.fitting.policy import resolve
from competition.fitting.module import Classifier
from competition.fitting.device import precision_for, training_device

from .common import add_output_flag, command, write_result


def rate(model: str, size: int, batch_size: int, steps: int, precision: str) -> float:
    device = training_device()
    cfg = resolve(RunConfig(models=(model,), precision=precision), channels=3, labelled=1000, stored_size=size,
                  hflip=True)
    module = Classifier.from_config(cfg, model=model, num_classes=2, image_shape=(3, size, size),
                                    mean=(0.5,) * 3, std=(0.25,) * 3, steps_per_epoch=steps + 2,
                                    ).to(device).train()
    optimizer = module.configure_optimizers()["optimizer"]
    images = torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 2, (batch_size,), device=device)
    dtype = torch.bfloat16 if precision_for(cfg, device) == "bf16-mixed" else None
    for step in range(steps + 2):
        if step == 2:
            start = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = module.training_step((images, labels), step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="timm/efficientnet_lite0")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128, 160, 224])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--precision", default="auto")
    add_output_flag(parser)
    args = parser.parse_args(argv)
    rows = []
    for size in args.sizes:
        rows.append({"model": args.model, "size": size, "device": training_device().type,
                     "precision": precision_for(RunConfig(precision=args.precision), training_device()),
                     "img_s": rate(args.model, size, args.batch_size, args.steps, args.precision)})
        print(rows[-1], flush=True)
    write_result("image_size_rate", rows, {"command": command("image_size_rate", argv)}, args.out)
    return rows


if __name__ == "__main__":
    main()
