"""`noisystudent ingest-svhn` on files in the real SVHN formats."""

import collections
import os

import numpy as np
import pytest
import scipy.io
import tensorflow as tf

from beam_pipelines import ingest_svhn
from noisystudent import dataset_dir, records
from tests.svhn_files import prepare_tfds_svhn, write_svhn_mat


def _read_all(out_dir):
    summary = dataset_dir.read_summary(str(out_dir))
    return {s: [records.parse_image_record(r) for r in dataset_dir.iter_split_records(str(out_dir), s)]
            for s in summary["splits"]}


@pytest.fixture(scope="module")
def svhn(tmp_path_factory):
    root = tmp_path_factory.mktemp("svhn")
    data = write_svhn_mat(root / "mat", compress=True)
    return root, data


def test_mat_ingestion_counts_ids_labels_pixels_and_validation(svhn, tmp_path):
    root, data = svhn
    summary = ingest_svhn.run(["--mat_dir", str(root / "mat"), "--output_dir", str(tmp_path),
                               "--validation_size", "15"])
    assert {s: v["records"] for s, v in summary["splits"].items()} == {
        "train": 45, "validation": 15, "test": 20, "extra": 30}
    splits = _read_all(tmp_path)
    ids = [r.image_id for rs in splits.values() for r in rs]
    assert len(ids) == len(set(ids)) == 110
    train_ids = {r.image_id for r in splits["train"]}
    assert train_ids.isdisjoint(r.image_id for r in splits["validation"])
    assert all(i.startswith("svhn/train/") for i in train_ids)
    for split in ("train", "validation", "test", "extra"):
        x, y = data["train" if split == "validation" else split]
        for r in splits[split]:
            index = int(r.image_id.rsplit("/", 1)[1])
            assert r.label == int(y[index, 0]) % 10  # 10 -> 0
            np.testing.assert_array_equal(tf.io.decode_png(r.encoded).numpy(), x[:, :, :, index])
    labels = collections.Counter(r.label for rs in splits.values() for r in rs)
    assert 0 in labels and 10 not in labels and max(labels) <= 9


def test_tfds_source_gives_the_same_records(svhn, tmp_path):
    root, _ = svhn
    prepare_tfds_svhn(root / "mat", tmp_path / "tfds")
    ingest_svhn.run(["--tfds_data_dir", str(tmp_path / "tfds"), "--output_dir", str(tmp_path / "a"),
                     "--validation_size", "15", "--splits", "train,test"])
    ingest_svhn.run(["--mat_dir", str(root / "mat"), "--output_dir", str(tmp_path / "b"),
                     "--validation_size", "15", "--splits", "train,test"])
    a, b = _read_all(tmp_path / "a"), _read_all(tmp_path / "b")
    assert set(a) == set(b) == {"train", "validation", "test"}
    for split in a:
        pix = lambda rs: {r.image_id: (r.label, tf.io.decode_png(r.encoded).numpy().tobytes()) for r in rs}
        assert pix(a[split]) == pix(b[split])


def test_bad_inputs_name_the_file_and_leave_nothing_complete(tmp_path):
    mat = tmp_path / "mat"
    write_svhn_mat(mat, sizes=(("train", 5), ("test", 5)))
    out = str(tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="extra_32x32.mat"):
        ingest_svhn.run(["--mat_dir", str(mat), "--output_dir", out])
    scipy.io.savemat(mat / "test_32x32.mat", {"X": np.zeros((28, 28, 3, 4), np.uint8),
                                              "y": np.ones((4, 1), np.uint8)})
    with pytest.raises(ValueError, match=r"test_32x32.mat: X has shape \(28, 28, 3, 4\)"):
        ingest_svhn.run(["--mat_dir", str(mat), "--output_dir", out, "--splits", "train,test"])
    scipy.io.savemat(mat / "test_32x32.mat", {"X": np.zeros((32, 32, 3, 4), np.uint8),
                                              "y": np.array([[1], [11], [3], [4]], np.uint8)})
    with pytest.raises(ValueError, match=r"test_32x32.mat: label 11 at index 1"):
        ingest_svhn.run(["--mat_dir", str(mat), "--output_dir", out, "--splits", "test"])
    with pytest.raises(FileNotFoundError, match="no prepared svhn_cropped"):
        ingest_svhn.run(["--tfds_data_dir", str(tmp_path / "empty"), "--output_dir", out])
    assert not os.path.exists(os.path.join(out, dataset_dir.SUMMARY_FILE))
    with pytest.raises(FileNotFoundError, match="did not finish"):
        dataset_dir.read_summary(out)


def test_the_original_4000_train_images_are_held_out_unless_asked_otherwise(tmp_path):
    """proc_svhn.py:164-170 holds out 4,000 train images, and the svhn preset's schedule counts the
    69,257 left: the default follows it (5 train images cannot give 4,000), 0 keeps them all."""
    mat = tmp_path / "mat"
    write_svhn_mat(mat, sizes=(("train", 5), ("test", 5)))
    with pytest.raises(ValueError, match="--validation_size 4000 leaves no train image of the 5"):
        ingest_svhn.run(["--mat_dir", str(mat), "--output_dir", str(tmp_path / "a"), "--splits", "train,test"])
    summary = ingest_svhn.run(["--mat_dir", str(mat), "--output_dir", str(tmp_path / "b"), "--splits", "train,test",
                               "--validation_size", "0"])
    assert summary["splits"]["train"]["records"] == 5 and "validation" not in summary["splits"]
    summary = ingest_svhn.run(["--mat_dir", str(mat), "--output_dir", str(tmp_path / "c"), "--splits", "test"])
    assert set(summary["splits"]) == {"test"}
