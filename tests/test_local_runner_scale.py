"""Nothing lost at real sizes: 20,000 images through ingest-folder, predict and select with the
default local runner, exact counts from what was written and byte-identical re-runs.

A 1,000-record test hid a local runner mode (Beam's multi_threading) that dropped ~1 record in
1,500 and corrupted GroupByKey input: these tests run each job twice at tens of thousands of
records, as a user does (docs/design.md, "Local runner").
"""

import json
import math
import os
import shutil

import keras
import numpy as np
import pytest
from PIL import Image

from beam_pipelines import ingest_folder, predict, select
from model import build_model
from noisystudent import dataset_dir
from noisystudent.errors import DamagedInputError, OutputIsInputError, SelectionRefused

UNLABELED_FOLDERS = 20
PER_FOLDER = 1_000
N_UNLABELED = UNLABELED_FOLDERS * PER_FOLDER  # 20,000 good images
CLASSES = ["a", "b", "c"]
PER_CLASS = 30


def _png_pool(n: int = 64) -> list[bytes]:
    import io

    pool = []
    rng = np.random.default_rng(0)
    for _ in range(n):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(buffer, format="PNG")
        pool.append(buffer.getvalue())
    return pool


def _write(path, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """20,000 + 2 corrupt unlabeled images in 20 folders, 3 labeled classes, and hidden clutter."""
    root = tmp_path_factory.mktemp("scale")
    pool = _png_pool()
    for i in range(N_UNLABELED):
        _write(root / f"unlabeled/f{i % UNLABELED_FOLDERS:02d}/{i:06d}.png", pool[i % len(pool)])
    _write(root / "unlabeled/f00/broken-1.png", b"\x89PNG not really")
    _write(root / "unlabeled/f07/broken-2.jpg", b"\xff\xd8\xff not really")
    for c, name in enumerate(CLASSES):
        for i in range(PER_CLASS):
            _write(root / f"labeled/{name}/{i}.png", pool[(7 * c + i) % len(pool)])
    # What real folders carry: none of it may become a class or an image.
    _write(root / "labeled/a/.ipynb_checkpoints/0-checkpoint.png", pool[0])
    os.makedirs(root / "labeled/.ipynb_checkpoints")
    _write(root / "unlabeled/.Trash-1000/files/old.png", pool[1])
    _write(root / "unlabeled/__MACOSX/f00/._000000.png", b"\x00\x05\x16\x07 resource fork")
    _write(root / "unlabeled/f03/.DS_Store", b"\x00\x00\x00\x01Bud1")
    return root


def _shards(directory, split):
    return {os.path.basename(p): open(p, "rb").read()
            for p in dataset_dir.split_files(str(directory), split)}


@pytest.fixture(scope="module")
def ingested(folders, tmp_path_factory):
    out = tmp_path_factory.mktemp("ingested")
    summaries = [ingest_folder.run(["--labeled_dir", str(folders / "labeled"), "--unlabeled_dir",
                                    str(folders / "unlabeled"), "--output_dir", str(out / f"run{i}"),
                                    "--records_per_shard", "2048"]) for i in range(2)]
    return out, summaries


def test_ingest_folder_writes_every_image_once_and_reruns_byte_identical(ingested):
    out, (first, second) = ingested
    assert first["class_names"] == CLASSES  # no hidden folder became a class
    assert first["accounting"] == {
        "labeled": {"input": 3 * PER_CLASS, "written": 3 * PER_CLASS, "dead_letter": 0},
        "unlabeled": {"input": N_UNLABELED + 2, "written": N_UNLABELED, "dead_letter": 2}}
    assert first["splits"]["labeled"]["labels"] == {"0": PER_CLASS, "1": PER_CLASS, "2": PER_CLASS}
    assert first["ignored"]["unlabeled"]["entries"] == [".Trash-1000", "__MACOSX", "f03/.DS_Store"]
    assert first["ignored"]["labeled"]["entries"] == [".ipynb_checkpoints", "a/.ipynb_checkpoints"]
    counted = sum(1 for _ in dataset_dir.iter_split_records(str(out / "run0"), "unlabeled"))
    assert counted == N_UNLABELED
    for split in ("labeled", "unlabeled"):
        assert _shards(out / "run0", split) == _shards(out / "run1", split)
    assert first["splits"] == second["splits"]


def test_two_worker_processes_write_the_same_bytes_as_the_default(folders, ingested, tmp_path):
    out, (first, _) = ingested
    summary = ingest_folder.run(["--labeled_dir", str(folders / "labeled"), "--unlabeled_dir",
                                 str(folders / "unlabeled"), "--output_dir", str(tmp_path / "mp"),
                                 "--records_per_shard", "2048",
                                 "--direct_num_workers=2", "--direct_running_mode=multi_processing"])
    assert summary["accounting"] == first["accounting"]
    for split in ("labeled", "unlabeled"):
        assert _shards(tmp_path / "mp", split) == _shards(out / "run0", split)


@pytest.fixture(scope="module")
def predicted(ingested, tmp_path_factory):
    out, _ = ingested
    work = tmp_path_factory.mktemp("predicted")
    keras.utils.set_random_seed(3)
    model = build_model("cnn-small", len(CLASSES), input_shape=(8, 8, 3))
    model.save(str(work / "teacher.keras"))
    summaries = [predict.run(["--input", str(out / "run0"), "--model", str(work / "teacher.keras"),
                              "--output_dir", str(work / f"run{i}"), "--teacher_name", "t"])
                 for i in range(2)]
    return work, summaries


def test_predict_labels_every_image_once_and_reruns_byte_identical(predicted):
    work, (first, second) = predicted
    assert first["accounting"] == {"predictions": {"input": N_UNLABELED, "written": N_UNLABELED,
                                                   "dead_letter": 0}}
    assert sum(first["predicted_class_histogram"].values()) == N_UNLABELED
    assert _shards(work / "run0", "predictions") == _shards(work / "run1", "predictions")
    assert first["predicted_class_histogram"] == second["predicted_class_histogram"]


def test_select_accounts_for_every_prediction_and_copy_and_reruns_byte_identical(predicted, tmp_path):
    work, _ = predicted
    runs = [select.run(["--predictions", str(work / "run0"), "--num_image", "9000", "--min_threshold", "0.0",
                        "--output_dir", str(tmp_path / f"run{i}"), "--samples_per_class", "0"])
            for i in range(2)]
    first = runs[0]
    # Copies cross the shuffle once per (image, shard), not once per copy.
    shards = len(first["splits"]["train"]["files"])
    assert first["kept_unique"] <= first["shuffled_records"] < first["written"]
    copies = {row["class"]: row["written"] / row["kept_unique"] for row in first["stats"]["classes"]
              if row["kept_unique"]}
    assert max(copies.values()) > 1.5  # a poor class really is duplicated
    assert first["shuffled_records"] <= sum(row["kept_unique"] * min(shards, math.ceil(row["expected_copies"]))
                                            for row in first["stats"]["classes"])
    accounting = first["accounting"]
    assert accounting["predictions"] == {"input": N_UNLABELED, "selectable": N_UNLABELED, "above_max_prob": 0,
                                         "dead_letter": 0}
    written = accounting["train"]["written"]
    assert accounting["train"] == {"input": written, "written": written, "dead_letter": 0}
    stats = [json.loads((tmp_path / f"run{i}" / "stats.json").read_text()) for i in range(2)]
    for row in stats[0]["classes"]:  # balanced to 9,000 a class: capped or duplicated
        assert abs(row["written"] - 9000) < 300 if row["total_above_threshold"] else row["written"] == 0
    assert sum(row["written"] for row in stats[0]["classes"]) == written > 0
    assert sum(1 for _ in dataset_dir.iter_split_records(str(tmp_path / "run0"), "train")) == written
    assert _shards(tmp_path / "run0", "train") == _shards(tmp_path / "run1", "train")
    assert stats[0] == stats[1]


def _tree(directory) -> dict:
    return {name: open(os.path.join(directory, name), "rb").read() for name in sorted(os.listdir(directory))}


def test_runs_in_place_are_refused_at_20k_and_leave_every_byte(ingested, predicted, tmp_path):
    out, _ = ingested
    work, _ = predicted
    before = _tree(work / "run0")
    with pytest.raises(OutputIsInputError, match="is the input --predictions"):
        select.run(["--predictions", str(work / "run0"), "--output_dir", str(work / "run0"), "--num_image", "9000",
                    "--overwrite"])
    with pytest.raises(OutputIsInputError, match="is the input --input"):
        predict.run(["--input", str(out / "run0"), "--split", "unlabeled", "--model", str(work / "teacher.keras"),
                     "--output_dir", str(out / "run0"), "--overwrite"])
    assert _tree(work / "run0") == before


def test_a_damaged_shard_at_20k_stops_predict_or_loses_exactly_its_unreadable_records(ingested, predicted,
                                                                                      tmp_path):
    out, _ = ingested
    work, _ = predicted
    damaged = tmp_path / "data"
    shutil.copytree(out / "run0", damaged)
    summary = dataset_dir.load_summary(str(damaged)).split("unlabeled")
    victim = summary.files[3]
    with open(damaged / victim, "r+b") as f:
        f.truncate(os.path.getsize(damaged / victim) * 2 // 3)
    argv = ["--input", str(damaged), "--model", str(work / "teacher.keras"), "--output_dir", str(tmp_path / "p")]
    with pytest.raises(DamagedInputError, match=rf"{victim}: [\d,]+ records readable of the "
                                                rf"{summary.file_records[victim]:,}"):
        predict.run(argv)
    assert not (tmp_path / "p" / "summary.json").exists()
    result = predict.run(argv + ["--allow_damaged_input"])
    lost = result["dead_letter"]
    assert 0 < lost < summary.file_records[victim] and result["predicted"] == N_UNLABELED - lost
    assert result["accounting"]["predictions"] == {"input": N_UNLABELED, "written": N_UNLABELED - lost,
                                                   "dead_letter": lost}
    assert sum(1 for _ in dataset_dir.iter_split_records(str(tmp_path / "p"), "predictions")) == N_UNLABELED - lost


def test_a_runaway_selection_at_20k_is_refused_before_anything_is_written(predicted, tmp_path):
    work, _ = predicted
    with pytest.raises(SelectionRefused, match="every kept image would be written at least 125.0 times"):
        select.run(["--predictions", str(work / "run0"), "--num_image", "2500000", "--output_dir", str(tmp_path / "a")])
    # Within the driver's bound (num_image / predictions <= 100), but every class with images gets num_image:
    # k classes x num_image from 20,000 images is 110x.
    k = sum(1 for n in predicted[1][0]["predicted_class_histogram"].values() if n)
    assert k >= 2
    num_image = N_UNLABELED * 110 // k
    with pytest.raises(SelectionRefused, match=rf"select would write about {k * num_image:,} records from "
                                               rf"{N_UNLABELED:,} kept unique images \(110.0x, over 100x\)"):
        select.run(["--predictions", str(work / "run0"), "--num_image", str(num_image), "--min_threshold", "0",
                    "--output_dir", str(tmp_path / "b")])
    assert not list((tmp_path / "b").glob("train-*")) and not (tmp_path / "b" / "summary.json").exists()
