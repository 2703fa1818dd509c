"""The GPU path, measured in one command: a device check that fits 8 minutes on one H100 or H200.

    python -m benchmarks.gpu_check --out DIR [--photos DIR --weights-dir DIR]   # on the GPU machine
    python -m benchmarks.gpu_check --dry-run --out DIR                          # here: the CPU, tiny settings

Writes DIR/gpu_check.json (and prints it), one section a measurement, each with the peak GPU memory it
took (`torch.cuda.max_memory_allocated`, reset before each):
1. `tests`: the gpu-marked tests (`pytest -m gpu`): passed, failed, skipped.
2. `default_run`: `python -m competition run` (mnist-5k, its auto budget) in this process: the plan, wall time,
   training rate, whether the images sat on the device, the precision, OOF and private accuracy.
3. `throughput`: training images/s of fastnet, fastnet-wide, resnet-small (28 px grey / 32 px colour) and
   timm/efficientnet_lite0 (224 px), through the harness (`train_model`, the epochs after the first) and through
   a bare PyTorch loop written here (the same net, batch, AdamW, bf16 autocast, shifts on the device), with and
   without channels_last and torch.compile; the harness's rate over the bare loop's is its overhead.
4. `ray_sharing`: members a minute with `--workers 4 --gpus-per-member 0.25` against one member at a time
   (skipped, saying so, where Ray is not installed).
5. `photo_run`: a photo competition at 224 px end to end with ImageNet weights (`--photos DIR` a Kaggle-form
   folder, `--weights-dir` its weights; else synthetic photos and random weights, marked so), with its plan.

Each section catches its own failure and records it, so one broken part leaves the others' figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def peak_memory_reset() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory_gib() -> float | None:
    return torch.cuda.max_memory_allocated() / 2 ** 30 if torch.cuda.is_available() else None


def section(name: str, results: dict, measure) -> None:
    """Run one measurement into results[name], with its wall time and peak GPU memory; a failure is recorded."""
    print(f"== {name}", flush=True)
    peak_memory_reset()
    start = time.perf_counter()
    try:
        results[name] = measure()
    except Exception as e:      # a broken part must not cost the others' figures
        results[name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-2000:]}
    results[name]["section_s"] = round(time.perf_counter() - start, 1)
    results[name]["peak_gpu_gib"] = peak_memory_gib()
    print(json.dumps({k: v for k, v in results[name].items() if k != "traceback"}, default=str)[:1500], flush=True)


def gpu_tests(dry_run: bool) -> dict:
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/test_gpu.py", "-p",
                           "no:cacheprovider"], cwd=REPO, capture_output=True, text=True, timeout=600)
    tail = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    counts = {word: int(n) for n, word in (part.strip().split()[:2] for part in tail.split(",")
                                            if part.strip() and part.strip()[0].isdigit())}
    return {"summary": tail, "exit": done.returncode, **counts}


def default_run(dry_run: bool, workspace: Path) -> dict:
    from competition.config import RunConfig
    from competition.pipeline import run
    from competition.workspace import Workspace
    cfg = RunConfig(competition="digits", folds=2, epochs=2, time_limit="none") if dry_run else RunConfig()
    lines: list[str] = []
    start = time.perf_counter()
    result = run(cfg, Workspace(workspace), log=lines.append)
    wall = time.perf_counter() - start
    plan = json.loads((result.run_dir / "run.json").read_text()).get("plan")
    first = next((line for line in lines if "images " in line and "labelled" in line), "")
    return {"competition": result.record.competition, "wall_s": wall,
            "plan": next((line for line in lines if line.startswith("plan:")), None),
            "train_img_s": None if plan is None else plan["rates"]["train"],
            "resident_on_device": "resident on cuda" in first, "first_line": first,
            "precision": result.fit.rounds[0].members[0].precision, "device": result.record.device,
            "oof": result.cv.value, "oof_ci": [result.cv.low, result.cv.high],
            "public": result.public.value, "private": result.private.value}


def bare_rate(model: str, shape: tuple[int, int, int], batch: int, steps: int, device: torch.device,
              channels_last: bool, compiled: bool) -> float:
    """Images/s of a bare PyTorch loop: the registry's net, AdamW, bf16 autocast on a GPU, random
    whole-pixel shifts of uint8 batches resident on the device."""
    from competition.fitting.models import create_model
    channels, height, width = shape
    net = create_model(model, num_classes=10, in_chans=channels, image_size=(height, width)).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    step_net = torch.compile(net) if compiled else net
    images = torch.randint(0, 256, (batch * 4, channels, height, width), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 10, (batch * 4,), device=device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    bf16 = device.type == "cuda"

    def one_step(i: int) -> None:
        rows = torch.randint(0, len(images), (batch,), device=device)
        x = images[rows].float().div_(255)
        dx, dy = (int(v) for v in torch.randint(-2, 3, (2,)))
        x = torch.roll(x, shifts=(dy, dx), dims=(2, 3)).contiguous(memory_format=fmt)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(step_net(x), labels[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    for i in range(3):
        one_step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(steps):
        one_step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


def harness_rate(model: str, shape: tuple[int, int, int], batch: int, epochs: int, images_n: int,
                 device: torch.device, workspace: Path) -> float:
    """Images/s of `train_model` on device-resident data, over the epochs after the first."""
    from competition.config import RunConfig
    from competition.fitting.policy import resolve
    from competition.fitting.train import TrainingData, train_model
    channels, height, width = shape
    cfg = resolve(RunConfig(models=(model,), epochs=epochs, batch_size=batch, patience=epochs, logger="none"),
                  channels=channels, labelled=images_n, stored_size=height, hflip=channels == 3)
    images = torch.randint(0, 256, (images_n, channels, height, width), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 10, (images_n,), device=device)
    data = TrainingData(train_images=images, train_labels=labels, val_images=images[:256], val_labels=labels[:256],
                        num_classes=10, mean=(0.5,) * channels, std=(0.25,) * channels, device=device)
    trained = train_model(data, cfg, model, seed=0, out_dir=Path(tempfile.mkdtemp(dir=workspace)))
    elapsed = [row["elapsed_s"] for row in trained.history]
    per_epoch = (elapsed[-1] - elapsed[0]) / max(1, len(elapsed) - 1)
    return images_n / per_epoch


def throughput(dry_run: bool, workspace: Path) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    models = [("fastnet", (1, 28, 28), 256), ("fastnet-wide", (1, 28, 28), 256), ("resnet-small", (3, 32, 32), 256),
              ("timm/efficientnet_lite0", (3, 224, 224), 64)]
    if dry_run:
        models = [(m, (c, min(h, 32), min(w, 32)), 32) for m, (c, h, w), _ in models]
    rows = []
    for model, shape, batch in models:
        if model.startswith("timm/"):
            try:
                import timm  # noqa: F401
            except ImportError:
                rows.append({"model": model, "skipped": "timm is not installed"})
                continue
        steps, images_n, epochs = (4, 2 * batch, 2) if dry_run else (60, 40 * batch, 3)
        row = {"model": model, "shape": list(shape), "batch": batch,
               "harness_img_s": harness_rate(model, shape, batch, epochs, images_n, device, workspace)}
        for channels_last in (True, False):
            for compiled in ((False,) if dry_run else (False, True)):
                key = f"bare{'_cl' if channels_last else '_nchw'}{'_compiled' if compiled else ''}_img_s"
                try:
                    row[key] = bare_rate(model, shape, batch, steps, device, channels_last, compiled)
                except Exception as e:      # torch.compile may not build a net: say so
                    row[key] = f"{type(e).__name__}: {str(e)[:200]}"
        row["harness_over_bare"] = row["harness_img_s"] / row["bare_cl_img_s"]
        rows.append(row)
        print(row, flush=True)
    return {"device": device.type, "rows": rows}


def ray_sharing(dry_run: bool, workspace: Path) -> dict:
    try:
        import ray  # noqa: F401
    except ImportError:
        return {"skipped": "Ray is not installed on this machine (pip install 'competition[ray]')"}
    from competition.config import RunConfig
    from competition.fitting.executors import InProcess, RayExecutor
    from competition.fitting.fit import fit
    from competition.preparing.prepare import prepare
    paths = prepare("digits" if dry_run else "mnist-5k", workspace / "data", log=lambda s: None)
    cfg = RunConfig(folds=4, epochs=1 if dry_run else 5, pseudo_rounds=0, time_limit="none", logger="none")
    minutes = {}
    for name, executor in (("one at a time", InProcess()),
                           ("4 workers x 0.25 GPU", RayExecutor(workers=4, gpus_per_member=0.25 if
                                                                 torch.cuda.is_available() else None))):
        start = time.perf_counter()
        fit(cfg, paths.public, workspace / name.replace(" ", "-"), executor, log=lambda s: None)
        minutes[name] = 4 / ((time.perf_counter() - start) / 60)
    import ray
    ray.shutdown()
    return {"members_per_minute": minutes}


def synthetic_photos(folder: Path, per_class: int = 60, test: int = 40) -> Path:
    """A Dogs-vs-Cats-form folder of tinted noise photos of varied sizes, with answers."""
    from PIL import Image
    rng = np.random.default_rng(0)
    (folder / "train").mkdir(parents=True)
    (folder / "test").mkdir()
    tints = {"cat": (200, 60, 60), "dog": (60, 60, 200)}
    for kind, tint in tints.items():
        for n in range(per_class):
            pixels = rng.integers(0, 80, (200 + n, 260 + n, 3)) + np.array(tint)
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / "train" / f"{kind}.{n}.jpg")
    truth = []
    for n in range(1, test + 1):
        kind = "cat" if n % 2 else "dog"
        pixels = rng.integers(0, 80, (240, 300, 3)) + np.array(tints[kind])
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / "test" / f"{n}.jpg")
        truth.append(kind)
    ids = list(range(1, test + 1))
    (folder / "sample_submission.csv").write_text("id,label\n" + "".join(f"{i},cat\n" for i in ids))
    (folder / "solution.csv").write_text("id,label,Usage\n" + "".join(
        f"{i},{k},{'Public' if i % 3 == 0 else 'Private'}\n" for i, k in zip(ids, truth)))
    return folder


def photo_run(dry_run: bool, workspace: Path, photos: Path | None, weights_dir: str | None) -> dict:
    try:
        import timm
    except ImportError:
        return {"skipped": "timm is not installed"}
    from competition.config import RunConfig
    from competition.pipeline import run
    from competition.workspace import Workspace
    synthetic = photos is None or not weights_dir
    if synthetic:
        photos = synthetic_photos(workspace / "photos", per_class=12 if dry_run else 60, test=8 if dry_run else 40)
        folder = workspace / "weights"
        folder.mkdir(exist_ok=True)
        name = "test_efficientnet" if dry_run else "efficientnet_lite0"
        torch.save(timm.create_model(name, num_classes=1000).state_dict(), folder / f"{name}.pth")
        weights_dir, model = str(folder), f"timm/{name}"
    else:
        model = "timm/efficientnet_lite0"
    cfg = RunConfig(models=(model,), weights_dir=weights_dir, image_size=224 if not dry_run else 32,
                    **({"folds": 2, "time_limit": "none", "epochs": 1, "min_steps": 2} if dry_run else {}))
    lines: list[str] = []
    start = time.perf_counter()
    result = run(cfg, Workspace(workspace / "photo-ws"), photos, log=lines.append)
    wall = time.perf_counter() - start
    return {"photos": str(photos), "synthetic": synthetic, "model": model, "wall_s": wall,
            "plan": next((line for line in lines if line.startswith("plan:")), "time_limit none (dry run)"),
            "features": next((line for line in lines if line.startswith("features of")), None),
            "members": [m.name for m in result.fit.final.members], "oof": result.cv.value,
            "public": result.public.value, "private": result.private.value}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")))
    parser.add_argument("--dry-run", action="store_true", help="the CPU with tiny settings: the script works")
    parser.add_argument("--photos", type=Path, help="a Kaggle-form photo folder (e.g. Dogs vs. Cats), carried")
    parser.add_argument("--weights-dir", help="its ImageNet weights: efficientnet_lite0.pth in timm's key names")
    parser.add_argument("--sections", nargs="+", default=["tests", "default_run", "throughput", "ray_sharing",
                                                          "photo_run"])
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run it on the GPU machine, or --dry-run here")
    workspace = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    results: dict = {"machine": {"torch": torch.__version__, "cuda": torch.version.cuda,
                                 "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                                 "cpus": os.cpu_count()}, "dry_run": args.dry_run}
    measures = {"tests": lambda: gpu_tests(args.dry_run),
                "default_run": lambda: default_run(args.dry_run, workspace / "default"),
                "throughput": lambda: throughput(args.dry_run, workspace),
                "ray_sharing": lambda: ray_sharing(args.dry_run, workspace / "ray"),
                "photo_run": lambda: photo_run(args.dry_run, workspace, args.photos, args.weights_dir)}
    for name in args.sections:
        section(name, results, measures[name])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"-> {args.out / 'gpu_check.json'}")
    return results


if __name__ == "__main__":
    main()
