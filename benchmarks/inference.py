"""Figure 4: inference throughput of the ensemble on the test set (images/s).

    python -m benchmarks.inference [--competition mnist-5k] [--seeds 3]

Throughput does not depend on the weights, so freshly built models are timed.
"""

from __future__ import annotations

import argparse
import time

from competition.module import Classifier
from competition.train import predict_logits, training_device

from .common import add_output_flag, command, training_data, write_result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--competition", default="mnist-5k")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    add_output_flag(parser)
    args = parser.parse_args(argv)
    cfg, data = training_data(args.competition)
    models = [Classifier(cfg.model, data.num_classes, data.image_size, data.mean, data.std, cfg.lr,
                         cfg.weight_decay, cfg.label_smoothing, cfg.schedule, 1, 1).to(data.test_images.device)
              for _ in range(args.seeds)]
    predict_logits(models[0], data.test_images)                                # warm-up
    start = time.perf_counter()
    for _ in range(args.repeats):
        for model in models:
            predict_logits(model, data.test_images)
    seconds = (time.perf_counter() - start) / args.repeats
    n = len(data.test_images)
    rows = [{"device": training_device().type, "model": cfg.model, "seeds": args.seeds, "test_images": n,
             "ensemble_img_s": n / seconds, "per_model_img_s": n * args.seeds / seconds}]
    write_result("inference", rows, {"command": command("inference", argv)}, args.out)
    return rows[0]


if __name__ == "__main__":
    main()
