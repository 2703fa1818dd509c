"""Prepare at scale: decode N photos of Dogs vs. Cats' size (500x375 JPEG) into the stored size.

    python -m benchmarks.prepare_scale [--images 25000] [--size 160] [--work DIR]

Writes a synthetic Dogs-vs-Cats-form folder (train/cat.N.jpg, train/dog.N.jpg, 10% as test/N.jpg;
smooth colour fields with a few shapes, so each JPEG has a photo's size on disk, ~20-40 KB), then
times `prepare_kaggle_folder` on it and reports images/s and the peak resident memory of the
preparing process and of its decoding workers: the images are never all in memory at once.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from competition.preparing.images import SizeRequest
from competition.preparing.prepare import prepare_kaggle_folder

from .common import add_output_flag, command, write_result

WIDTH, HEIGHT = 500, 375


def _photo(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH] / max(WIDTH, HEIGHT)
    base = rng.uniform(40, 200, 3)
    slope = rng.uniform(-120, 120, (2, 3))
    pixels = base + yy[..., None] * slope[0] + xx[..., None] * slope[1] + rng.normal(0, 6, (HEIGHT, WIDTH, 3))
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x, y = rng.integers(0, WIDTH - 60), rng.integers(0, HEIGHT - 60)
        draw.ellipse([x, y, x + rng.integers(20, 160), y + rng.integers(20, 160)], fill=tuple(rng.integers(0, 256, 3)))
    return image


def _write(job: tuple[str, int]) -> None:
    path, seed = job
    _photo(seed).save(path, quality=85)


def write_folder(folder: Path, count: int) -> None:
    (folder / "train").mkdir(parents=True)
    (folder / "test").mkdir()
    test = count // 10
    jobs = [(str(folder / "test" / f"{i + 1}.jpg"), i) for i in range(test)]
    jobs += [(str(folder / "train" / f"{('cat', 'dog')[i % 2]}.{i // 2}.jpg"), test + i) for i in range(count - test)]
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        list(pool.map(_write, jobs, chunksize=64))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=25_000)
    parser.add_argument("--size", type=int, default=160, help="the stored side (as a CPU fine-tune stores them)")
    parser.add_argument("--work", type=Path, default=None, help="folder for the photos (default: a temporary one)")
    add_output_flag(parser)
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-prepare-"))
    folder = work / "photos"
    start = time.perf_counter()
    write_folder(folder, args.images)
    written = time.perf_counter() - start
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    paths = prepare_kaggle_folder(folder, work / "data", log=print, sizes=SizeRequest(size=args.size))
    seconds = time.perf_counter() - start
    row = {"images": args.images, "original": f"{WIDTH}x{HEIGHT} JPEG", "stored": f"{args.size}x{args.size}x3",
           "prepare_s": seconds, "images_per_s": args.images / seconds, "cores": os.cpu_count(),
           "peak_rss_mib_main": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "peak_rss_mib_worker": max(before_children, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024,
           "stored_mib": sum(p.stat().st_size for p in paths.public.glob("*.npy")) / 2 ** 20,
           "photos_mib": sum(p.stat().st_size for p in folder.rglob("*.jpg")) / 2 ** 20, "write_s": written}
    write_result("prepare_scale", [row], {"command": command("prepare_scale", argv)}, args.out)
    return row


if __name__ == "__main__":
    main()
