"""Figure 5: training FLOPs per image of the default model, achieved FLOP/s, share of the CPU's peak,
and a torch.profiler breakdown of where a training step's time goes.

    python -m benchmarks.efficiency [--competition mnist-5k] [--epochs 2]

Peak fp32 FLOP/s = cores x clock x FLOPs per cycle per core. FLOPs per cycle = 2 (an FMA is a
multiply and an add) x fp32 lanes of the FMA datapath x FMA pipes. AMD Zen 4 runs AVX-512 on two
256-bit FMA pipes (8 lanes x 2 pipes x 2 = 32); AVX-512 Intel server cores with two 512-bit FMA
units give 64; AVX2 machines with two 256-bit units give 32. The clock is /proc/cpuinfo's "cpu MHz"
(the base clock a VM reports; turbo would make the true peak higher and the share lower).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from competition.config import RunConfig
from competition.fitting.data import augment, normalize, to_unit
from competition.fitting.models import create_model

from .common import add_output_flag, command, training_data, write_result
from .throughput import AUG, harness_rate


def training_flops_per_image(cfg: RunConfig, image_size: int, num_classes: int, batch: int = 128) -> float:
    """Forward + backward FLOPs of one training step, per image (counted by FlopCounterMode)."""
    model = create_model(cfg.models[0], num_classes=num_classes, image_size=image_size, **cfg.model_kwargs)
    x = torch.randn(batch, 1, image_size, image_size)
    y = torch.randint(0, num_classes, (batch,))
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / batch


def cpu_peak_flops() -> tuple[float, dict]:
    text = Path("/proc/cpuinfo").read_text()
    mhz = float(re.search(r"cpu MHz\s*:\s*([\d.]+)", text).group(1))
    flags = set(re.search(r"flags\s*:\s*(.+)", text).group(1).split())
    vendor = re.search(r"vendor_id\s*:\s*(\S+)", text).group(1)
    family = int(re.search(r"cpu family\s*:\s*(\d+)", text).group(1))
    if "avx512f" in flags and not (vendor == "AuthenticAMD" and family == 25):
        per_cycle, why = 64, "AVX-512: 16 lanes x 2 FMA units x 2"
    elif "avx2" in flags or "avx512f" in flags:
        per_cycle, why = 32, "256-bit FMA datapath (AVX2, or Zen 4's double-pumped AVX-512): 8 lanes x 2 pipes x 2"
    else:
        per_cycle, why = 16, "SSE: 4 lanes x 2 units x 2"
    cores = torch.get_num_threads()
    peak = cores * mhz * 1e6 * per_cycle
    return peak, {"cores_used": cores, "clock_mhz": mhz, "flops_per_cycle_per_core": per_cycle, "basis": why}


def profile_step(cfg: RunConfig, data, steps: int = 10) -> list[dict]:
    """Self CPU time per operator over a few training steps (forward, backward, optimiser, augmentation)."""
    model = create_model(cfg.models[0], num_classes=data.num_classes, image_size=data.image_shape[1:])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images, labels = data.train_images[:cfg.batch_size], data.train_labels[:cfg.batch_size]

    def step() -> None:
        x = normalize(augment(to_unit(images), AUG), data.mean, data.std)
        loss = F.cross_entropy(model(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    return [{"op": e.key, "self_cpu_ms_per_step": e.self_cpu_time_total / 1000 / steps,
             "share": e.self_cpu_time_total / total} for e in events[:12]]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--competition", default="mnist-5k")
    parser.add_argument("--epochs", type=int, default=2)
    add_output_flag(parser)
    args = parser.parse_args(argv)
    cfg, data = training_data(args.competition)
    flops = training_flops_per_image(cfg, data.image_shape[1], data.num_classes)
    rate = harness_rate(data, cfg, args.epochs)
    achieved = flops * rate
    peak, basis = cpu_peak_flops()
    breakdown = profile_step(cfg, data)
    rows = [{"model": cfg.models[0], "train_mflop_per_image": flops / 1e6, "train_img_s": rate,
             "achieved_gflop_s": achieved / 1e9, "peak_gflop_s": peak / 1e9, "share_of_peak": achieved / peak}]
    write_result("efficiency", rows, {"command": command("efficiency", argv), "peak_basis": basis,
                                      "profile_top_ops": breakdown}, args.out)
    print("where a training step's CPU time goes (self time, top ops):")
    for op in breakdown[:8]:
        print(f"  {op['op']:<40} {op['self_cpu_ms_per_step']:7.2f} ms/step  {op['share']:6.1%}")
    return rows[0]


if __name__ == "__main__":
    main()
