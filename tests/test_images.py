"""Photos of any size, mode and format reach one stored size by the one rule images.py states."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, features

from competition.preparing import images
from competition.fitting.data import load_public
from competition.errors import DataSourceError
from competition.preparing.folders import read_kaggle_folder
from competition.preparing.images import SizeRequest, decode_into, fit_to_size, load_pixels, read_header
from competition.preparing.prepare import prepare_kaggle_folder

from conftest import silent, write_image_folder

QUIET = dict(log=silent)
GREY_RAMP = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (8, 1))        # (8, 16) grey levels 0..240


def _saved(tmp_path: Path, image: Image.Image, name: str = "image.png", **kwargs) -> Path:
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


# mode -> (the PIL image, whether the set it is in is grey, the pixels the rule gives)
def _modes() -> dict[str, tuple[Image.Image, bool, np.ndarray]]:
    rgb = np.zeros((8, 16, 3), np.uint8)
    rgb[..., 0], rgb[..., 2] = GREY_RAMP, 255 - GREY_RAMP
    rgba = np.dstack([rgb, np.where(np.arange(16) < 8, 255, 0).astype(np.uint8)[None].repeat(8, 0)])
    over_white = np.where(rgba[..., 3:] == 255, rgb, 255).astype(np.uint8)
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    bits = GREY_RAMP >= 128
    la = np.dstack([GREY_RAMP, rgba[..., 3]])
    cmyk = Image.fromarray(rgb).convert("CMYK")
    return {
        "L": (Image.fromarray(GREY_RAMP), True, GREY_RAMP),
        "1": (Image.fromarray(bits), True, np.where(bits, 255, 0).astype(np.uint8)),
        "I;16": (Image.fromarray(GREY_RAMP.astype(np.uint16) * 257), True, GREY_RAMP),
        "LA": (Image.fromarray(la, mode="LA"), True, np.where(la[..., 1] == 255, GREY_RAMP, 255).astype(np.uint8)),
        "RGB": (Image.fromarray(rgb), False, rgb),
        "RGBA": (Image.fromarray(rgba), False, over_white),
        "P": (palette, False, np.asarray(palette.convert("RGB"))),
        "CMYK": (cmyk, False, np.asarray(cmyk.convert("RGB"))),
    }


@pytest.mark.parametrize("mode", list(_modes()))
def test_every_mode_is_converted_by_the_stated_rule(tmp_path, mode):
    image, grey, expected = _modes()[mode]
    assert image.mode == mode
    path = _saved(tmp_path, image, "image.tif" if mode == "CMYK" else "image.png")
    assert read_header(path).grey == grey
    assert np.array_equal(load_pixels(path, grey), expected)


def test_a_grey_image_in_a_colour_set_fills_the_three_channels(tmp_path):
    path = _saved(tmp_path, Image.fromarray(GREY_RAMP))
    assert np.array_equal(load_pixels(path, grey=False), np.repeat(GREY_RAMP[..., None], 3, axis=2))


FORMATS = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "BMP": ".bmp", "WEBP": ".webp"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_pillow_writes_is_read(tmp_path, fmt):
    if fmt == "WEBP" and not features.check("webp"):
        pytest.skip("this Pillow was built without WebP")
    rgb = np.repeat(GREY_RAMP[..., None], 3, axis=2)
    lossless = {"JPEG": dict(quality=100), "WEBP": dict(lossless=True)}.get(fmt, {})
    path = _saved(tmp_path, Image.fromarray(rgb), "image" + FORMATS[fmt], **lossless)
    pixels = load_pixels(path, grey=False)
    assert pixels.shape == (8, 16, 3)
    assert np.abs(pixels.astype(int) - rgb).max() <= (3 if fmt == "JPEG" else 0)


def test_exif_orientation_stands_the_photo_up(tmp_path):
    wide = np.zeros((8, 16, 3), np.uint8)
    wide[:, :4] = 255                                           # a bright left edge
    exif = Image.Exif()
    exif[images.ORIENTATION] = 6                                # "rotate 90 CW to view"
    path = _saved(tmp_path, Image.fromarray(wide), "phone.jpg", exif=exif, quality=100)
    header, pixels = read_header(path), load_pixels(path, grey=False)
    assert (header.height, header.width) == pixels.shape[:2] == (16, 8)
    assert pixels[:4].mean() > 200 and pixels[-4:].mean() < 50  # the left edge is now on top


def test_a_file_pillow_cannot_read_is_named_with_its_path(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataSourceError, match=r"broken.jpg: cannot read the image"):
        load_pixels(path, grey=False)


def test_crop_fills_the_square_and_pad_keeps_the_whole_image():
    tall = np.zeros((40, 20), np.uint8)
    tall[:10], tall[-10:] = 255, 128                            # bright top, grey bottom
    cropped, padded = fit_to_size(tall, (10, 10), "crop"), fit_to_size(tall, (10, 10), "pad")
    assert cropped.shape == padded.shape == (10, 10)
    assert cropped.max() < 60                                   # centre crop: the dark middle only
    assert padded[:, :2].max() == 0 and padded[:, -2:].max() == 0    # black bars either side
    assert padded[0, 5] > 200 and 100 < padded[-1, 5] < 160     # top and bottom both kept
    assert fit_to_size(tall, (40, 20), "crop") is tall          # the right size is left alone


def test_auto_size_keeps_a_shared_size_and_takes_the_median_side_of_varied_ones():
    request = SizeRequest(limit=64)
    assert request.choose([(28, 28)] * 3) == ((28, 28), "every image is 28x28")
    assert request.choose([(12, 16)] * 2)[0] == (12, 16)
    size, why = request.choose([(30, 40), (50, 60), (70, 20)])
    assert size == (30, 30) and "median shorter side is 30" in why
    assert request.choose([(300, 400), (500, 375)])[0] == (64, 64)
    assert SizeRequest(size=48).choose([(28, 28)]) == ((48, 48), "--image-size 48")


def test_decoding_in_parallel_gives_the_arrays_of_one_process(tmp_path, monkeypatch):
    folder = write_image_folder(tmp_path / "comp", n_train=40, n_test=8, suffix=".jpg")
    paths = sorted((folder / "train").glob("*.jpg"))
    monkeypatch.setattr(images, "CHUNK", 7)                     # several tasks for two processes
    parallel = decode_into(paths, tmp_path / "parallel.npy", (10, 10), "pad", grey=False, workers=2)
    serial = decode_into(paths, tmp_path / "serial.npy", (10, 10), "pad", grey=False, workers=1)
    assert parallel.shape == (40, 10, 10, 3) and np.array_equal(parallel, serial)
    assert np.array_equal(serial[3], fit_to_size(load_pixels(paths[3], False), (10, 10), "pad"))


def _varied_sizes(folder):
    """Give every training and test image its own size (as photos have)."""
    for i, path in enumerate(sorted(folder.rglob("*.png"))):
        with Image.open(path) as img:
            img.resize((16 + i % 7 * 5, 12 + i % 5 * 4)).save(path)


def test_a_folder_of_varied_sizes_is_stored_at_one_size_and_says_why(tmp_path):
    folder = write_image_folder(tmp_path / "comp", n_train=30, n_test=9)
    _varied_sizes(folder)
    lines: list[str] = []
    paths = prepare_kaggle_folder(folder, tmp_path / "data", log=lines.append, sizes=SizeRequest(limit=16))
    public = load_public(paths.public)
    assert public.image_shape == (3, 16, 16) and public.competition.resize == "crop"
    assert public.competition.hflip                             # a colour folder: photos keep their class mirrored
    assert any("image size 16x16: the median shorter side is" in line and "at most 16" in line for line in lines)
    padded = load_public(prepare_kaggle_folder(folder, tmp_path / "pad", sizes=SizeRequest(size=24, resize="pad"),
                                               **QUIET).public)
    assert padded.image_shape == (3, 24, 24) and padded.competition.resize == "pad"


def write_dogs_vs_cats(folder, n_per_class: int = 12, n_test: int = 8):
    """Kaggle's Dogs vs. Cats form: train/cat.N.jpg, train/dog.N.jpg, test/N.jpg, varied sizes."""
    rng = np.random.default_rng(0)
    (folder / "train").mkdir(parents=True)
    (folder / "test").mkdir()
    for kind, tint in (("cat", (200, 60, 60)), ("dog", (60, 60, 200))):
        for n in range(n_per_class):
            pixels = rng.integers(0, 60, (20 + n, 30 + 2 * n, 3)) + np.array(tint)
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / "train" / f"{kind}.{n}.jpg")
    for n in range(1, n_test + 1):
        pixels = rng.integers(0, 60, (25, 31 + n, 3)) + np.array((200, 60, 60) if n % 2 else (60, 60, 200))
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / "test" / f"{n}.jpg")
    truth = ["cat" if n % 2 else "dog" for n in range(1, n_test + 1)]
    pd.DataFrame({"id": range(1, n_test + 1), "label": "cat"}).to_csv(folder / "sample_submission.csv", index=False)
    pd.DataFrame({"id": range(1, n_test + 1), "label": truth,
                  "Usage": ["Public", "Private"] * (n_test // 2)}).to_csv(folder / "solution.csv", index=False)
    return folder


def test_dogs_vs_cats_form_takes_the_labels_from_the_file_names(tmp_path):
    read = read_kaggle_folder(write_dogs_vs_cats(tmp_path / "dvc"), **QUIET)
    assert read.form == "named-files" and read.classes == ("cat", "dog")
    assert list(read.raw.train_ids[:3]) == ["cat.0", "cat.1", "cat.2"] and read.raw.train_ids[12] == "dog.0"
    assert np.array_equal(read.raw.train_labels, [0] * 12 + [1] * 12)
    assert list(read.raw.test_ids) == [str(n) for n in range(1, 9)]


def test_a_named_files_folder_of_one_label_is_refused(tmp_path):
    folder = write_dogs_vs_cats(tmp_path / "dvc")
    for path in (folder / "train").glob("dog.*"):
        path.unlink()
    with pytest.raises(DataSourceError, match="every file name gives the label 'cat'"):
        read_kaggle_folder(folder, **QUIET)


def test_prepared_images_are_a_view_of_the_memory_map_not_a_copy(tmp_path):
    paths = prepare_kaggle_folder(write_dogs_vs_cats(tmp_path / "dvc"), tmp_path / "data", **QUIET)
    public = load_public(paths.public)
    stored = np.load(paths.train_images, mmap_mode="r")
    assert torch.equal(public.train_images, torch.from_numpy(np.array(stored)).permute(0, 3, 1, 2))
    assert public.train_images.is_contiguous(memory_format=torch.channels_last)     # NHWC as stored
