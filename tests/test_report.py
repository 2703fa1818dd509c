"""The per-run report: every figure exists, is a real PNG of sensible size, and is in the HTML."""

from __future__ import annotations

import re
import struct

import pytest

from competition.cli import main
from competition.pipeline import run

from conftest import silent, write_image_folder

pytestmark = pytest.mark.slow


def _png_size(path):
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


def test_report_for_a_tiny_digits_run_embeds_every_figure(workspace, tiny_config, capsys):
    result = run(tiny_config, workspace, log=silent)
    html_path = result.run_dir / "report.html"
    page = html_path.read_text()
    figures = sorted((result.run_dir / "report").glob("*.png"))
    names = {p.stem for p in figures}
    assert {"train_samples", "test_samples", "class_counts", "training_curves", "confusion", "misclassified",
            "most_confident", "pseudo_counts"} <= names
    for png in figures:
        width, height = _png_size(png)
        assert 200 <= width <= 3000 and 80 <= height <= 3000, (png.name, width, height)
        assert f'data-file="report/{png.name}"' in page
    assert page.count('src="data:image/png;base64,') == len(figures)
    assert "http://" not in page and "https://" not in page          # self-contained
    for heading in ("Data", "Training", "Submission", "Mistakes", "Pseudo-labels"):
        assert f"<h2>{heading}</h2>" in page
    assert re.search(r"round 0 fold 0 seed 0 fastnet</td><td>0\.\d{4} \(0\.\d{4}-[01]\.\d{4}\)</td>", page)
    assert "CV: 2-fold out-of-fold accuracy over 1,437 labelled images" in page

    leaderboard = workspace.leaderboard.read_text()
    assert f"[{result.run_dir.name}](submissions/{result.run_dir.name}/report.html)" in leaderboard

    html_path.unlink()
    assert main(["--root", str(workspace.root), "report", result.run_dir.name]) == 0
    assert html_path.is_file() and str(html_path) in capsys.readouterr().out


@pytest.mark.parametrize("num_classes", [2, 100])
def test_a_colour_report_names_its_classes_with_2_or_100_of_them(tmp_path, workspace, tiny_config, num_classes):
    folder = write_image_folder(tmp_path / "comp", n_train=3 * num_classes, n_test=num_classes, height=8, width=8,
                                num_classes=num_classes)
    result = run(tiny_config.replace(epochs=1, pseudo_rounds=0), workspace, folder, log=silent)
    page = (result.run_dir / "report.html").read_text()
    names = ["kind-000", "kind-001"] if num_classes == 2 else [f"kind-{k:03d}" for k in range(num_classes)]
    assert all(f"<td>{name}</td>" in page for name in names)     # the per-class table names every class
    assert "8x8 colour" in page
    for png in sorted((result.run_dir / "report").glob("*.png")):
        width, height = _png_size(png)
        assert 200 <= width <= 6000 and 80 <= height <= 6000, (png.name, width, height)
