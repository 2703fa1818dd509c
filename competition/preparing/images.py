"""Image files of any size, mode and format -> one stored size, decoded in parallel into a memory map.

The one path every image takes on its way to training, validation, test and every test-time view:
`load_pixels` (orientation and mode) then `fit_to_size` (size). The rules:

- EXIF orientation is applied first (a phone photo stands as it was taken).
- Modes: a set is grey if every image is grey ("1", "L", "LA", "I", "I;16", "F"), else RGB.
  1-bit -> 0/255; 16-bit ("I;16", "I") -> 8 bits by v/257 (the full range kept, not clipped);
  "F" clipped to 0..255; a transparent image ("LA", "RGBA", "P" with transparency) is composited
  over white, as a page shows it; "P" (palette), "CMYK", "YCbCr", "LAB", "HSV" -> RGB by Pillow;
  in an RGB set a grey image is repeated into the three channels. A multi-frame file gives its first.
- Size: images that all share one size keep it (digits, CIFAR); otherwise (or with `--image-size`)
  each is resized to S x S by `crop` (shorter side to S, centre crop: no padding, loses the edges of
  long images) or `pad` (longer side to S, centred on black: keeps all of it), with Pillow's
  antialiased bicubic filter. JPEGs are decoded at the smallest DCT scale that still covers S.

`decode_into` spreads the files over worker processes; each writes its rows straight into the
(N, S, S, C) uint8 `.npy` memory map, so no process holds every image at once.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..cpus import usable_cpus
from ..errors import DataSourceError

GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
RESIZE_POLICIES = ("crop", "pad")
ORIENTATION = 0x0112                # the EXIF tag; values 5-8 turn the image a quarter
CHUNK = 64                          # files per task: large enough to amortise the task, small for balance


def _open(path: Path):
    from PIL import Image, UnidentifiedImageError
    try:
        return Image.open(path)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataSourceError(f"{path}: cannot read the image ({e})") from e


@dataclass(frozen=True, kw_only=True)
class Header:
    """What a file's header says, read without decoding its pixels."""
    height: int                     # after EXIF orientation
    width: int
    grey: bool


def read_header(path: Path) -> Header:
    with _open(path) as img:
        width, height = img.size
        try:
            turned = img.getexif().get(ORIENTATION, 1) in (5, 6, 7, 8)
        except Exception:   # a malformed EXIF block is not a reason to refuse the image; it is read upright
            turned = False
        if turned:
            width, height = height, width
        return Header(height=height, width=width, grey=img.mode in GREY_MODES)


def read_headers(paths: list[Path], workers: int | None = None) -> list[Header]:
    """Every file's header, in parallel for large sets (opening a file costs a system call or two)."""
    if len(paths) < 2000:
        return [read_header(p) for p in paths]
    with ProcessPoolExecutor(max_workers=workers or usable_cpus()) as pool:
        return list(pool.map(read_header, paths, chunksize=256))


def load_pixels(path: Path, grey: bool, draft_size: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W) uint8 for a grey set, (H, W, 3) for a colour set, upright, by the module's mode rule.
    `draft_size` (width, height): a JPEG may be decoded at a smaller scale that still covers it."""
    from PIL import Image, ImageOps
    with _open(path) as img:
        try:
            if draft_size is not None and img.format == "JPEG":
                img.draft("L" if grey else "RGB", draft_size)
            img.seek(0)
            img = ImageOps.exif_transpose(img)
            mode = img.mode
            if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
                pixels = np.asarray(img, dtype=np.float64)
                pixels = np.rint(np.clip(pixels, 0, 65535) / 257.0).astype(np.uint8)
                return pixels if grey else np.repeat(pixels[..., None], 3, axis=2)
            if mode == "F":
                pixels = np.clip(np.asarray(img, dtype=np.float64), 0, 255).round().astype(np.uint8)
                return pixels if grey else np.repeat(pixels[..., None], 3, axis=2)
            if mode == "P":
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
            if img.mode in ("LA", "La", "RGBA", "RGBa", "PA"):
                rgba = img.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(white, rgba).convert("L" if grey else "RGB")
            pixels = np.asarray(img.convert("L" if grey else "RGB"), dtype=np.uint8)
        except (OSError, ValueError, SyntaxError, EOFError) as e:
            raise DataSourceError(f"{path}: cannot read the image ({e})") from e
    return pixels


def fit_to_size(pixels: np.ndarray, size: tuple[int, int], policy: str) -> np.ndarray:
    """(H, W[, C]) uint8 -> (h, w[, C]) by `crop` or `pad`; unchanged when it already has that size."""
    from PIL import Image
    height, width = pixels.shape[:2]
    target_h, target_w = size
    if (height, width) == (target_h, target_w):
        return pixels
    if policy not in RESIZE_POLICIES:
        raise ValueError(f"resize policy {policy!r}; choose one of {RESIZE_POLICIES}")
    scale = (max if policy == "crop" else min)(target_h / height, target_w / width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    img = Image.fromarray(pixels).resize((new_w, new_h), Image.BICUBIC, reducing_gap=3.0)
    resized = np.asarray(img)
    if policy == "crop":
        top, left = (new_h - target_h) // 2, (new_w - target_w) // 2
        return np.ascontiguousarray(resized[top:top + target_h, left:left + target_w])
    out = np.zeros((target_h, target_w, *pixels.shape[2:]), np.uint8)
    top, left = (target_h - new_h) // 2, (target_w - new_w) // 2
    out[top:top + new_h, left:left + new_w] = resized
    return out


def _decode_chunk(job: tuple[list[str], str, int, tuple[int, int], str, bool]) -> int:
    """Runs in a worker: decode some files and write them into their rows of the memory map."""
    paths, out, first_row, size, policy, grey = job
    images = np.load(out, mmap_mode="r+")
    for row, path in enumerate(paths, start=first_row):
        pixels = fit_to_size(load_pixels(Path(path), grey, draft_size=(size[1], size[0])), size, policy)
        images[row] = pixels[..., None] if grey else pixels
    images.flush()
    return len(paths)


def decode_into(paths: list[Path], out: Path, size: tuple[int, int], policy: str, grey: bool,
                workers: int | None = None, log: Callable[[str], None] | None = None) -> np.ndarray:
    """Decode `paths` into a new (N, h, w, C) uint8 `.npy` file at `out`, in parallel; returns it
    memory-mapped read-only. A progress bar shows on a terminal; `log` gets the rate at the end."""
    from tqdm import tqdm
    start = time.perf_counter()
    channels = 1 if grey else 3
    images = np.lib.format.open_memmap(out, mode="w+", dtype=np.uint8, shape=(len(paths), *size, channels))
    del images                      # the workers write through their own maps
    jobs = [([str(p) for p in paths[i:i + CHUNK]], str(out), i, size, policy, grey)
            for i in range(0, len(paths), CHUNK)]
    bar = tqdm(total=len(paths), unit="img", desc=f"decoding {out.stem}", disable=not sys.stderr.isatty(),
               leave=False)
    workers = min(workers or usable_cpus(), max(1, len(jobs)))
    if workers == 1:
        for job in jobs:
            bar.update(_decode_chunk(job))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for done in pool.map(_decode_chunk, jobs):
                bar.update(done)
    bar.close()
    if log is not None and len(paths) >= 1000:
        seconds = time.perf_counter() - start
        log(f"  decoded {len(paths):,} images into {out.name} in {seconds:.1f}s "
            f"({len(paths) / seconds:,.0f} images/s, {workers} processes)")
    return np.load(out, mmap_mode="r")


def describe_sizes(headers: list[Header]) -> str:
    """'all 28x28', or the min / median / max of the sides, for people."""
    sizes = {(h.height, h.width) for h in headers}
    if len(sizes) == 1:
        height, width = sizes.pop()
        return f"all {height}x{width}"
    heights = np.array([h.height for h in headers])
    widths = np.array([h.width for h in headers])
    return (f"{len(sizes):,} sizes: height {heights.min()}-{int(np.median(heights))}-{heights.max()}, "
            f"width {widths.min()}-{int(np.median(widths))}-{widths.max()} (min-median-max)")


def median_shorter_side(headers: list[Header]) -> int:
    return int(np.median([min(h.height, h.width) for h in headers]))


@dataclass(frozen=True, kw_only=True)
class SizeRequest:
    """What the stored image size should be: `--image-size S`, or auto (see `choose`)."""
    size: int | None = None         # every image S x S; None: auto
    limit: int = 64                 # auto's largest side for images of varied sizes
    limit_reason: str = "the default"   # why that limit (the model, the device), for the log
    resize: str = "crop"            # crop | pad, for images that change size
    colour_limit: int | None = None     # for colour images, where it differs (a pretrained backbone's size)
    colour_reason: str = ""

    def __post_init__(self) -> None:
        if self.size is not None and not 8 <= self.size <= 1024:
            raise DataSourceError(f"--image-size {self.size}: give a side of 8 to 1024 pixels")
        if self.resize not in RESIZE_POLICIES:
            raise DataSourceError(f"--resize {self.resize!r}: choose one of {', '.join(RESIZE_POLICIES)}")

    @property
    def key(self) -> str:
        """Equal keys, equal stored images: a competition prepared under another is prepared again."""
        colour = f" colour={self.colour_limit}" if self.colour_limit else ""
        return f"size={self.size or 'auto'} limit={self.limit}{colour} resize={self.resize}"

    def accepts(self, stored_key: str, shape: tuple[int, int, int], resize: str) -> bool:
        """Whether images stored under `stored_key` at `shape` (H, W, C) answer this request: an
        explicit size by the shape itself (a recorded config repeats a run without preparing again)."""
        if self.size is not None:
            return shape[0] == shape[1] == self.size and resize in ("none", self.resize)
        return stored_key == self.key

    def choose(self, sizes: list[tuple[int, int]], grey: bool = True) -> tuple[tuple[int, int], str]:
        """((height, width), why) for images of these (height, width) sizes. auto: a set that shares
        one size keeps it; a set of varied sizes goes to its median shorter side, at most `limit`
        (`colour_limit` for colour images, where given)."""
        if self.size is not None:
            return (self.size, self.size), f"--image-size {self.size}"
        distinct = set(sizes)
        if len(distinct) == 1:
            height, width = distinct.pop()
            return (height, width), f"every image is {height}x{width}"
        limit, reason = (self.limit, self.limit_reason) if grey or not self.colour_limit else \
            (self.colour_limit, self.colour_reason)
        median = int(np.median([min(s) for s in sizes]))
        side = max(16, min(median, limit))
        why = f"the median shorter side is {median} px" + \
            (f", at most {limit} for {reason}" if median > limit else "")
        return (side, side), why
