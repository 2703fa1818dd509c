"""Speed levers, measured one at a time: training images/s of the harness's default recipe.

    python -m benchmarks.levers [--competition mnist-5k] [--epochs 2]

Each row changes one thing from the baseline, which is the harness as it ships (batch 256,
torch's default threads, fp32 on the CPU, channels_last, eager mode). Accuracy is not measured
here: a lever that wins on speed still has to hold accuracy in time_to_accuracy before it is kept.

The last two rows compare ways of training an ensemble, in plain torch loops (no Trainer, so the
loop overhead is the same for both): the seeds' models one after another, and all of them in one
`torch.func.vmap`-ed pass over stacked parameters (`stack_module_state`).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import lightning as L
import torch
from torch.func import functional_call, stack_module_state, vmap

from competition.config import RunConfig
from competition.fitting.data import DeviceBatches, augment, normalize, to_unit
from competition.fitting.models import create_model
from competition.fitting.module import Classifier
from competition.fitting.device import precision_for

from .common import add_output_flag, command, training_data, write_result
from .throughput import AUG, _trainer


def rate(data, cfg: RunConfig, epochs: int, channels_last: bool = True, compiled: bool = False) -> float:
    batches = DeviceBatches(data.train_images, data.train_labels, cfg.batch_size, shuffle=True)
    module = Classifier.from_config(cfg.replace(augment=AUG, epochs=epochs + 1), model=cfg.models[0],
                                    num_classes=data.num_classes, image_shape=data.image_shape, mean=data.mean,
                                    std=data.std, steps_per_epoch=len(batches), channels_last=channels_last)
    if compiled:
        module.net = torch.compile(module.net)
    device = data.train_images.device
    _trainer(1, device, precision_for(cfg, device)).fit(module, batches)        # warm-up (and compile)
    start = time.perf_counter()
    _trainer(epochs, device, precision_for(cfg, device)).fit(module, batches)
    return epochs * len(data.train_images) / (time.perf_counter() - start)


def ensemble_rate(data, cfg: RunConfig, n_models: int, in_one_pass: bool, steps: int = 60) -> float:
    """Training img/s (every model's images counted) of n models: one after another, or in one vmap-ed pass."""
    def make_net() -> torch.nn.Module:
        net = create_model(cfg.models[0], num_classes=data.num_classes, image_size=data.image_shape[1:],
                           **cfg.model_kwargs)
        return net.to(data.train_images.device, memory_format=torch.channels_last)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.randint(len(data.train_images), (cfg.batch_size,), device=data.train_images.device)
        x = normalize(augment(to_unit(data.train_images[rows]), AUG), data.mean, data.std)
        return x.contiguous(memory_format=torch.channels_last), data.train_labels[rows]

    def loss_of(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(logits, labels, label_smoothing=cfg.label_smoothing)

    nets = [make_net() for _ in range(n_models)]
    optimizers = [torch.optim.AdamW(net.parameters(), lr=cfg.lr) for net in nets]

    def one_after_another() -> None:
        for net, optimizer in zip(nets, optimizers):
            x, y = batch()
            optimizer.zero_grad(set_to_none=True)
            loss_of(net(x), y).backward()
            optimizer.step()

    params, buffers = stack_module_state(nets)          # leaves of shape (n_models, ...)
    skeleton = make_net().to("meta")
    stacked_optimizer = torch.optim.AdamW(params.values(), lr=cfg.lr)

    def one_model(p: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(skeleton, (p, b), (x,))

    def all_at_once() -> None:
        xs, ys = zip(*(batch() for _ in range(n_models)))
        logits = vmap(one_model, randomness="different")(params, buffers, torch.stack(xs))
        stacked_optimizer.zero_grad(set_to_none=True)
        loss_of(logits.flatten(0, 1), torch.cat(ys)).backward()
        stacked_optimizer.step()

    step = all_at_once if in_one_pass else one_after_another
    step()                                              # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * n_models * cfg.batch_size / (time.perf_counter() - start)


def one_thread(measure: Callable[[], float]) -> Callable[[], float]:
    """The same measurement with torch limited to one thread."""
    def measured() -> float:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return measure()
        finally:
            torch.set_num_threads(threads)
    return measured


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--competition", default="mnist-5k")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="rounds over all levers; the median is reported")
    parser.add_argument("--skip-compile", action="store_true", help="leave out torch.compile (slow to build)")
    parser.add_argument("--ensemble", type=int, default=3, help="models in the vmap comparison")
    parser.add_argument("--ensemble-steps", type=int, default=60, help="timed steps of the vmap comparison")
    add_output_flag(parser)
    args = parser.parse_args(argv)
    base, data = training_data(args.competition)
    L.seed_everything(0, verbose=False)
    levers: dict[str, Callable[[], float]] = {
        "baseline": lambda: rate(data, base, args.epochs),
        "batch 64": lambda: rate(data, base.replace(batch_size=64), args.epochs),
        "batch 128": lambda: rate(data, base.replace(batch_size=128), args.epochs),
        "batch 512": lambda: rate(data, base.replace(batch_size=512), args.epochs),
        "contiguous NCHW": lambda: rate(data, base, args.epochs, channels_last=False),
        "1 thread": one_thread(lambda: rate(data, base, args.epochs)),
    }
    if not args.skip_compile:
        levers["torch.compile"] = lambda: rate(data, base, args.epochs, compiled=True)
    n, steps = args.ensemble, args.ensemble_steps
    levers[f"{n} seeds one after another (plain loop)"] = lambda: ensemble_rate(data, base, n, False, steps)
    levers[f"{n} seeds in one vmap pass (plain loop)"] = lambda: ensemble_rate(data, base, n, True, steps)
    # Round-robin over the levers, so drift in a shared machine's speed hits them all alike.
    rates: dict[str, list[float]] = {name: [] for name in levers}
    for _ in range(args.repeats):
        for name, measure in levers.items():
            rates[name].append(measure())
    rows = [{"lever": name, "train_img_s": statistics.median(r), "min_img_s": min(r), "max_img_s": max(r)}
            for name, r in rates.items()]
    for row in rows:
        row["vs_baseline"] = row["train_img_s"] / rows[0]["train_img_s"]
    write_result("levers", rows, {"command": command("levers", argv), "repeats": args.repeats}, args.out)
    return rows


if __name__ == "__main__":
    main()
