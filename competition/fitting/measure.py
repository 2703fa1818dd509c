"""This machine's rates for a run's plan (plan.py): a throwaway member trained for a few short
epochs and a prediction pass timed; a pretrained backbone's features and linear head timed; and the
process's threads they were measured with."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from ..config import RunConfig
from ..cpus import torch_threads
from .data import pixel_stats, to_placement
from .device import precision_for
from .plan import Rates
from .predict import IDENTITY, predict
from .probe import FEATURE_BATCH, backbone_net, extract_features, feature_bf16, fit_linear_head
from .train import TrainingData, train_model



def measure_rates(public, cfg: RunConfig, device: torch.device, steps: int = 6) -> Rates:
    """Train a throwaway member of `cfg.models[0]` for three short epochs of `steps` batches on the
    first labelled images (the faster of the last two is the rate: the first pays the warm-up), a
    second for one epoch (its time beyond the epoch is a member's fixed cost), then predict 1,024
    images (the fastest of three passes after a warm one). The members are real: the same
    augmentation, precision, checkpoints and validation as a run's. No test labels exist to read;
    the test images are read only where consistency training trains on them."""
    # the run's threads, as each member sets them (members.train_member)
    torch.set_num_threads(torch_threads(cfg.threads))
    n = min(len(public.train_labels), steps * int(cfg.batch_size))
    images = to_placement(public.train_images[:n], device, "device")
    labels = public.train_labels[:n].to(device)
    mean, std = pixel_stats(images)
    val = min(n, 256)
    data = TrainingData(train_images=images, train_labels=labels, val_images=images[:val], val_labels=labels[:val],
                        num_classes=public.num_classes, mean=mean, std=std, device=device)
    probe = cfg.replace(epochs=3, patience=0, pseudo_rounds=0, min_steps=0)
    unlabelled = None if cfg.consistency == "none" else to_placement(public.test_images[:n], device, "device")
    with tempfile.TemporaryDirectory(prefix="rate-probe-") as folder:
        # the first member of a process pays one-off warm-ups (imports, kernel choices): this one
        trained = train_model(data, probe, cfg.models[0], seed=0, out_dir=Path(folder) / "warm",
                              unlabelled=unlabelled)
        # a process's first member is still warming in its second epoch (well below the steady rate):
        # the faster of epochs two and three is its rate
        ends = [(row["elapsed_s"], row["cpu_s"]) for row in trained.history[:3]]
        epoch_s, epoch_cpu_s = min((b[0] - a[0], b[1] - a[1]) for a, b in zip(ends, ends[1:]))
        epoch_s = max(epoch_s, 1e-3)
        # ... and a warm one-epoch member gives the fixed cost every member pays beyond its epochs
        start = time.perf_counter()
        train_model(data, probe.replace(epochs=1), cfg.models[0], seed=1, out_dir=Path(folder) / "setup",
                    unlabelled=unlabelled)
        setup_s = max(time.perf_counter() - start - epoch_s, 0.0)
    sample = public.test_images[:1024] if len(public.test_images) else public.train_images[:1024]
    predict(trained.module, sample, IDENTITY)     # warm: the first call at a batch shape picks its kernels
    passes = []
    for _ in range(3):      # one pass is one or two batches: a single timing read 4,600 to 14,700 img/s
        predict_start = time.perf_counter()
        predict(trained.module, sample, IDENTITY)
        passes.append(time.perf_counter() - predict_start)
    predict_rate = len(sample) / max(min(passes), 1e-3)
    # the epoch held a validation pass over `val` images too: take it out of the training rate
    train_s = max(epoch_s - val / predict_rate, 0.2 * epoch_s)
    # a GPU's work is not the process's CPU time: no share there
    cpu_share = epoch_cpu_s / (epoch_s * torch.get_num_threads()) if device.type == "cpu" else None
    return Rates(train=n / train_s, predict=predict_rate, member_setup_s=setup_s,
                 device=device.type, precision=precision_for(cfg, device), cpu_share=cpu_share,
                 threads=torch.get_num_threads())


def measure_probe(public, cfg: RunConfig, device: torch.device, count: int = 4 * 32) -> Rates:
    """A resolved config's probe on this machine: images a second through its frozen backbone in one
    view (the fastest of two passes over `count` training images after a warm one), and seconds its
    head's fit takes per training image (a fit on those images' features, C chosen as a fold chooses
    it). Training is not measured: its rate is a bound no fine-tune beats (an image's training costs
    at least three forward passes), which `plan.plan` replaces with a measurement where a fine-tune
    could fit at all."""
    torch.set_num_threads(torch_threads(cfg.threads))
    model = cfg.models[0]
    images = public.train_images[:count]
    net, mean, std = backbone_net(model, cfg, images.shape[1])
    kwargs = dict(views=IDENTITY, size=int(cfg.input_size), mean=mean, std=std, device=device,
                  bf16=feature_bf16(cfg, device))
    # warm: a batch of each shape the timed passes use picks its kernels (bf16's are picked per shape)
    extract_features(net, images[:FEATURE_BATCH], **kwargs)
    passes = []
    for _ in range(2):
        start = time.perf_counter()
        features = extract_features(net, images, **kwargs)
        passes.append(time.perf_counter() - start)
    rate = len(images) / max(min(passes), 1e-3)
    start = time.perf_counter()
    fit_linear_head(features, public.train_labels[:len(images)], public.num_classes)
    fit_s = (time.perf_counter() - start) / len(images)
    return Rates(train=rate / 3, predict=rate, member_setup_s=0.0, device=device.type,
                 precision="bf16 features" if feature_bf16(cfg, device) else "float32 features", features=rate,
                 probe_fit_s=fit_s, threads=torch.get_num_threads())
