"""Readers (IDX, PNG folders, CIFAR batches, Kaggle CSV), curation, and downloads against a loopback server."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import tarfile

import numpy as np
import pandas as pd
import pytest

from competition.preparing import competitions
from competition.preparing.competitions import curate
from competition.preparing.sources import (DataSourceError, RemoteFile, download, read_cifar_tarball, read_idx, read_idx_pair,
                                 read_pixel_csv, read_png_folders, write_pixel_csv)

from conftest import idx_bytes, make_images, silent, write_cifar_tarball, write_idx_set, write_png_folders


def test_idx_round_trip_gzipped_and_plain(tmp_path):
    paths = write_idx_set(tmp_path / "gz", gz=True)
    plain = write_idx_set(tmp_path / "plain", gz=False)
    images, labels = read_idx_pair(paths["train-images-idx3-ubyte"], paths["train-labels-idx1-ubyte"])
    expected_images, expected_labels = make_images(60, seed=1)
    assert np.array_equal(images, expected_images) and np.array_equal(labels, expected_labels)
    assert np.array_equal(read_idx(plain["t10k-images-idx3-ubyte"]), make_images(20, seed=2)[0])


def test_truncated_idx_file_is_rejected_with_its_name(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_bytes(make_images(5)[0])[:-100])
    with pytest.raises(DataSourceError, match="train-images-idx3-ubyte: truncated"):
        read_idx(path)


def test_idx_with_bad_magic_or_broken_gzip_is_rejected(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04" + bytes(20))
    with pytest.raises(DataSourceError, match="bad magic"):
        read_idx(tmp_path / "bad")
    (tmp_path / "broken.gz").write_bytes(gzip.compress(idx_bytes(make_images(3)[0]))[:30])
    with pytest.raises(DataSourceError, match="broken.gz"):
        read_idx(tmp_path / "broken.gz")


def test_png_folders_skip_and_count_unreadable_images(tmp_path):
    write_png_folders(tmp_path / "set")
    images, labels, report = read_png_folders(tmp_path / "set", competitions.LETTERS)
    assert images.shape == (30, 28, 28) and np.bincount(labels).tolist() == [3] * 10
    assert sorted(report.unreadable) == ["A/corrupt0.png", "B/small0.png"]
    assert report.per_class["A"] == 3


def test_curation_removes_duplicates_in_train_and_train_images_from_test():
    images, labels = make_images(20, seed=6)
    train = np.concatenate([images[:10], images[:3]])           # 3 exact duplicates
    test = np.concatenate([images[10:], images[5:7]])            # 2 test images seen in training
    curated = curate(train, np.concatenate([labels[:10], labels[:3]]), test,
                     np.concatenate([labels[10:], labels[5:7]]))
    assert len(curated.train_images) == 10 and len(curated.test_images) == 10
    assert "removed from training: 3" in curated.notes[0] and "dropped from test: 2" in curated.notes[1]


def test_kaggle_csv_round_trip_and_errors_name_row_and_column(tmp_path):
    images, labels = make_images(6, side=8)
    write_pixel_csv(tmp_path / "train.csv", images, labels)
    read_images, read_labels = read_pixel_csv(tmp_path / "train.csv", with_labels=True)
    assert np.array_equal(read_images, images) and np.array_equal(read_labels, labels)

    lines = (tmp_path / "train.csv").read_text().splitlines()
    lines[3] = lines[3].replace(",", ",x", 1)
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataSourceError, match=r"bad.csv: row 4, column 'pixel0'"):
        read_pixel_csv(tmp_path / "bad.csv", with_labels=True)
    (tmp_path / "nolabel.csv").write_text("pixel0,pixel1,pixel2,pixel3\n1,2,3,4\n")
    with pytest.raises(DataSourceError, match="first column must be 'label'"):
        read_pixel_csv(tmp_path / "nolabel.csv", with_labels=True)
    (tmp_path / "range.csv").write_text("pixel0,pixel1,pixel2,pixel3\n1,2,300,4\n")
    with pytest.raises(DataSourceError, match="row 2, column 'pixel2': pixel 300 outside 0..255"):
        read_pixel_csv(tmp_path / "range.csv", with_labels=False)


# ---------------------------------------------------------------- downloads on loopback


def test_download_verifies_md5_and_falls_back_to_the_next_mirror(http_server, tmp_path):
    served, url = http_server
    payload = gzip.compress(idx_bytes(make_images(4)[0]), mtime=0)
    (served / "good").mkdir()
    (served / "good" / "images.gz").write_bytes(payload)
    remote = RemoteFile("images.gz", (url + "missing/", url + "good/"), md5=hashlib.md5(payload).hexdigest())
    path = download(remote, tmp_path / "raw")
    assert path.read_bytes() == payload
    assert read_idx(path).shape == (4, 28, 28)


def test_download_with_a_checksum_mismatch_is_rejected_and_leaves_nothing(http_server, tmp_path):
    served, url = http_server
    (served / "images.gz").write_bytes(b"tampered bytes")
    remote = RemoteFile("images.gz", (url,), md5="0" * 32)
    with pytest.raises(DataSourceError, match="md5 .* does not match"):
        download(remote, tmp_path / "raw")
    assert list((tmp_path / "raw").iterdir()) == []


def test_mnist_is_downloaded_from_a_mirror_and_prepared(http_server, tmp_path, monkeypatch):
    from competition.preparing.prepare import prepare
    served, url = http_server
    files = write_idx_set(served)
    remotes = {key: RemoteFile(remote.name, (url,), md5=hashlib.md5(files[remote.name[:-3]].read_bytes()).hexdigest())
               for key, remote in competitions.MNIST_FILES.items()}
    load, _ = competitions._idx_source(remotes)
    monkeypatch.setitem(competitions.COMPETITIONS, "mnist",
                        dataclasses.replace(competitions.COMPETITIONS["mnist"], load=load))
    paths = prepare("mnist", tmp_path / "data", log=silent)
    assert (paths.raw / "train-images-idx3-ubyte.gz").is_file()
    assert (paths.public / "test.csv").read_text().count("\n") == 21


def test_mnist_offline_without_files_says_where_to_put_them(tmp_path):
    from competition.preparing.prepare import prepare
    with pytest.raises(DataSourceError, match=r"Put the four IDX files .* in .*data/mnist/raw/"):
        prepare("mnist", tmp_path / "data", allow_download=False, log=silent)


def test_notmnist_tarball_is_downloaded_extracted_curated_and_prepared(http_server, tmp_path, monkeypatch):
    from competition.preparing.prepare import prepare
    served, url = http_server
    write_png_folders(tmp_path / "build" / "notMNIST_small", per_class=6)
    # an exact duplicate inside the set, to be removed by curation
    (tmp_path / "build" / "notMNIST_small" / "C" / "dup.png").write_bytes(
        (tmp_path / "build" / "notMNIST_small" / "C" / "0.png").read_bytes())
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(tmp_path / "build" / "notMNIST_small", arcname="notMNIST_small")
    (served / "notMNIST_small.tar.gz").write_bytes(buffer.getvalue())
    monkeypatch.setattr(competitions, "NOTMNIST_SMALL",
                        RemoteFile("notMNIST_small.tar.gz", (url,), size=len(buffer.getvalue())))
    lines = []
    paths = prepare("notmnist", tmp_path / "data", log=lines.append)
    printed = "\n".join(lines)
    assert "unreadable images skipped in notMNIST_small: 2" in printed
    assert "exact duplicates removed from training: 1" in printed
    assert "A=6, B=6" in printed
    train = (paths.public / "train.csv").read_text().count("\n") - 1
    test = (paths.public / "test.csv").read_text().count("\n") - 1
    assert train + test == 60


def test_cifar10_tarball_is_downloaded_verified_and_prepared_with_its_official_test_set(
        http_server, tmp_path, monkeypatch):
    from competition.fitting.data import load_public
    from competition.preparing.prepare import prepare
    served, url = http_server
    first = write_cifar_tarball(served / "cifar-10-python.tar.gz", per_batch=12, n_test=20)
    md5 = hashlib.md5((served / "cifar-10-python.tar.gz").read_bytes()).hexdigest()
    monkeypatch.setattr(competitions, "CIFAR10", RemoteFile("cifar-10-python.tar.gz", (url,), md5=md5))
    paths = prepare("cifar10", tmp_path / "data", log=silent)
    assert (paths.raw / "cifar-10-python.tar.gz").is_file()
    public = load_public(paths.public)
    assert public.image_shape == (3, 32, 32) and len(public.train_labels) == 60 and len(public.test_images) == 20
    assert public.hflip and public.classes[0] == "airplane"
    assert any(np.array_equal(first, image) for image in public.train_images.permute(0, 2, 3, 1).numpy())
    solution = pd.read_csv(paths.solution, dtype=str)
    assert list(solution.columns) == ["id", "label", "Usage"] and solution["label"].isin(public.classes).all()
    assert (paths.public / "sample_submission.csv").read_text().startswith("id,label\n1,airplane\n")


def test_a_cifar10_tarball_that_fails_its_checksum_is_refused(http_server, tmp_path, monkeypatch):
    from competition.preparing.prepare import prepare
    served, url = http_server
    write_cifar_tarball(served / "cifar-10-python.tar.gz")
    monkeypatch.setattr(competitions, "CIFAR10", RemoteFile("cifar-10-python.tar.gz", (url,), md5="0" * 32))
    with pytest.raises(DataSourceError, match=r"(?s)md5 .* does not match.*Put cifar-10-python.tar.gz in"):
        prepare("cifar10", tmp_path / "data", log=silent)
    assert not (tmp_path / "data" / "cifar10" / "raw" / "cifar-10-python.tar.gz").exists()


def test_a_cifar_batch_that_would_run_code_is_refused(tmp_path):
    import pickle
    import tarfile

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    data = pickle.dumps({b"data": Payload(), b"labels": []})
    with tarfile.open(tmp_path / "evil.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(DataSourceError, match="posix.system is not allowed in a CIFAR batch"):
        read_cifar_tarball(tmp_path / "evil.tar.gz")
