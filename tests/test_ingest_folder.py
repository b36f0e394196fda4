"""`noisystudent ingest-folder`: your own images, one sub-folder per class."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from beam_pipelines import dataset_output, ingest_folder
from noisystudent import dataset_dir, records
from noisystudent.errors import RecordAccountingError


def _image(path, seed, fmt=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)
    return pixels


@pytest.fixture
def folders(tmp_path):
    pixels = {}
    for c, name in enumerate(["cat", "dog", "emu"]):
        for i in range(2):
            pixels[f"train/{name}/{i}.png"] = _image(tmp_path / f"train/{name}/{i}.png", 10 * c + i)
        _image(tmp_path / f"train/{name}/photo.jpg", 100 + c)
        _image(tmp_path / f"test/{name}/t.png", 200 + c)
    pixels["raw/deep/er/x.bmp"] = _image(tmp_path / "raw/deep/er/x.bmp", 300, "BMP")
    _image(tmp_path / "raw/y.jpeg", 301)
    (tmp_path / "raw/broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "raw/README.txt").write_text("not an image")
    return tmp_path, pixels


def test_labeled_test_and_unlabeled_folders(folders, tmp_path):
    root, pixels = folders
    out = tmp_path / "out"
    summary = ingest_folder.run([
        "--labeled_dir", str(root / "train"), "--test_dir", str(root / "test"),
        "--unlabeled_dir", str(root / "raw"), "--output_dir", str(out), "--dataset_name", "pets"])
    assert summary["class_names"] == ["cat", "dog", "emu"]
    assert {s: v["records"] for s, v in summary["splits"].items()} == {
        "labeled": 9, "test": 3, "unlabeled": 2}
    assert summary["splits"]["labeled"]["labels"] == {"0": 3, "1": 3, "2": 3}
    # The corrupt file is reported, with its path and reason; the job finished.
    assert summary["dead_letter"] == 1
    dead = [json.loads(line) for line in (out / dataset_output.DEAD_LETTER_FILE).read_text().splitlines()]
    assert dead[0]["path"].endswith("raw/broken.jpg") and "undecodable" in dead[0]["reason"]

    got = {r.image_id: r for s in ("labeled", "test", "unlabeled")
           for r in map(records.parse_image_record, dataset_dir.iter_split_records(str(out), s))}
    assert got["pets/labeled/dog/1.png"].label == 1
    assert got["pets/test/emu/t.png"].label == 2
    assert got["pets/unlabeled/deep/er/x.bmp"].label == records.UNLABELED
    for rel, expected in pixels.items():
        split = {"train": "labeled", "raw": "unlabeled"}[rel.split("/")[0]]
        record = got[f"pets/{split}/{rel.split('/', 1)[1]}"]
        np.testing.assert_array_equal(tf.io.decode_image(record.encoded).numpy(), expected)
    assert got["pets/labeled/cat/photo.jpg"].encoded[:2] == b"\xff\xd8"  # JPEG kept as is


def test_class_mismatch_and_missing_folders_are_clear_errors(folders, tmp_path):
    root, _ = folders
    _image(root / "test/zebra/z.png", 5)
    with pytest.raises(ValueError, match=r"class folders \['zebra'\] are not among"):
        ingest_folder.run(["--labeled_dir", str(root / "train"), "--test_dir", str(root / "test"),
                           "--output_dir", str(tmp_path / "o")])
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ingest_folder.run(["--unlabeled_dir", str(tmp_path / "nowhere"), "--output_dir", str(tmp_path / "o")])
    with pytest.raises(ValueError, match="at least one of"):
        ingest_folder.run(["--output_dir", str(tmp_path / "o")])


def test_hidden_entries_are_skipped_and_listed_and_empty_classes_refused(folders, tmp_path):
    root, _ = folders
    os.makedirs(root / "train/.ipynb_checkpoints")  # Jupyter's, with nothing inside
    _image(root / "train/dog/.ipynb_checkpoints/0-checkpoint.png", 7)
    _image(root / "raw/.git/objects/ab.png", 8)
    summary = ingest_folder.run(["--labeled_dir", str(root / "train"), "--unlabeled_dir", str(root / "raw"),
                                 "--output_dir", str(tmp_path / "o")])
    assert summary["class_names"] == ["cat", "dog", "emu"]  # not 4 classes with every label shifted
    assert summary["splits"]["labeled"]["labels"] == {"0": 3, "1": 3, "2": 3}
    assert summary["ignored"]["labeled"] == {"files": 1, "entries": [".ipynb_checkpoints",
                                                                     "dog/.ipynb_checkpoints"]}
    assert summary["ignored"]["unlabeled"] == {"files": 1, "entries": [".git"]}
    os.makedirs(root / "train/fox")  # a class folder with no images
    with pytest.raises(ValueError, match=r"class folder\(s\) \['fox'\] hold no images"):
        ingest_folder.run(["--labeled_dir", str(root / "train"), "--output_dir", str(tmp_path / "o2")])
    assert not (tmp_path / "o2" / "summary.json").exists()
    # Unless the user names the classes: then an empty class is what they asked for.
    summary = ingest_folder.run(["--labeled_dir", str(root / "train"), "--class_names", "cat,dog,emu,fox",
                                 "--output_dir", str(tmp_path / "o3")])
    assert summary["num_classes"] == 4 and summary["splits"]["labeled"]["labels"] == {"0": 3, "1": 3, "2": 3}


def test_a_record_lost_by_the_writer_fails_the_job_and_writes_no_summary(folders, tmp_path, monkeypatch):
    root, _ = folders
    real_process = dataset_output._WriteShardFn.process

    def drop_one(self, element):  # a writer that silently loses a record, as a bad runner mode did
        (split, shard), groups = element
        groups = [list(g) for g in groups]
        if split == "labeled" and shard == 0:
            groups[0] = groups[0][1:]
        return real_process(self, ((split, shard), groups))

    monkeypatch.setattr(dataset_output._WriteShardFn, "process", drop_one)
    with pytest.raises(RecordAccountingError,
                       match=r"split 'labeled': 9 records in, 8 written, 0 dead letter \(\+1 unaccounted for\)"):
        ingest_folder.run(["--labeled_dir", str(root / "train"), "--output_dir", str(tmp_path / "o")])
    assert not (tmp_path / "o" / "summary.json").exists()
    with pytest.raises(FileNotFoundError, match="no summary.json"):
        dataset_dir.read_summary(str(tmp_path / "o"))
