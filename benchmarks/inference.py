"""Figure 4: inference throughput of the ensemble on the test set (images/s).

    python -m benchmarks.inference [--competition mnist-5k] [--seeds 3]

Throughput does not depend on the weights, so freshly built models are timed.
"""

from __future__ import annotations

import argparse
import time

from competition.module import Classifier
from competition.predict import predict
from competition.train import training_device

from .common import add_output_flag, command, public_data, training_data, write_result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--competition", default="mnist-5k")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    add_output_flag(parser)
    args = parser.parse_args(argv)
    cfg, data = training_data(args.competition)
    models = [Classifier.from_config(cfg, model=cfg.models[0], num_classes=data.num_classes,
                                     image_shape=data.image_shape, mean=data.mean, std=data.std,
                                     steps_per_epoch=1).to(data.train_images.device)
              for _ in range(args.seeds)]
    test_images = public_data(args.competition)[0].test_images.to(data.train_images.device)
    predict(models[0], test_images)                                # warm-up
    start = time.perf_counter()
    for _ in range(args.repeats):
        for model in models:
            predict(model, test_images)
    seconds = (time.perf_counter() - start) / args.repeats
    n = len(test_images)
    rows = [{"device": training_device().type, "model": cfg.models[0], "seeds": args.seeds, "test_images": n,
             "ensemble_img_s": n / seconds, "per_model_img_s": n * args.seeds / seconds}]
    write_result("inference", rows, {"command": command("inference", argv)}, args.out)
    return rows[0]


if __name__ == "__main__":
    main()
