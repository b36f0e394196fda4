"""`noisystudent ingest-idx`: IDX files (raw or .gz) in, the dataset contract out, true labels hidden."""

import gzip
import struct

import numpy as np
import pytest
import tensorflow as tf

from beam_pipelines import ingest_idx
from noisystudent import dataset_dir, records


def write_idx(path, array, gz=False):
    """The IDX format: big-endian magic (0x0803 images, 0x0801 labels), dims, then uint8 data."""
    magic = 0x00000800 | array.ndim
    data = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)
    return str(path)


@pytest.fixture(scope="module")
def idx_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("idx")
    rng = np.random.default_rng(0)
    train, test = rng.integers(0, 256, (25000, 6, 5)), rng.integers(0, 256, (300, 6, 5))
    train_labels, test_labels = rng.integers(0, 10, 25000), rng.integers(0, 10, 300)
    files = {"train_images": write_idx(root / "train-images-idx3-ubyte.gz", train, gz=True),
             "train_labels": write_idx(root / "train-labels-idx1-ubyte.gz", train_labels, gz=True),
             "test_images": write_idx(root / "t10k-images-idx3-ubyte", test),
             "test_labels": write_idx(root / "t10k-labels-idx1-ubyte", test_labels)}
    return files, train, train_labels, test, test_labels


def test_idx_files_become_labeled_unlabeled_and_test_splits_with_hidden_labels(idx_files, tmp_path):
    files, train, train_labels, test, test_labels = idx_files
    summary = ingest_idx.run_config(ingest_idx.IngestIdxConfig(output_dir=str(tmp_path), labels_per_class=7,
                                                               seed=3, **files))
    assert {s: v["records"] for s, v in summary["splits"].items()} == {"labeled": 70, "unlabeled": 24930,
                                                                        "test": 300}
    assert summary["accounting"]["unlabeled"] == {"input": 24930, "written": 24930, "dead_letter": 0}
    labeled = [records.parse_image_record(r) for r in dataset_dir.iter_split_records(str(tmp_path), "labeled")]
    assert sorted(np.bincount([r.label for r in labeled])) == [7] * 10
    for r in labeled[:20]:
        index = int(r.image_id.split("/")[-1])
        assert r.label == train_labels[index] and r.image_id.startswith("mnist/train/")
        np.testing.assert_array_equal(tf.io.decode_png(r.encoded).numpy()[..., 0], train[index])
    unlabeled = [records.parse_image_record(r) for r in dataset_dir.iter_split_records(str(tmp_path), "unlabeled")]
    assert {r.label for r in unlabeled} == {records.UNLABELED}
    assert all(r.hidden_label == train_labels[int(r.image_id.split("/")[-1])] for r in unlabeled[::97])
    tests = {r.image_id: r for r in map(records.parse_image_record, dataset_dir.iter_split_records(str(tmp_path),
                                                                                                   "test"))}
    assert tests["mnist/test/000042"].label == test_labels[42]
    np.testing.assert_array_equal(tf.io.decode_png(tests["mnist/test/000042"].encoded).numpy()[..., 0], test[42])


def test_same_seed_same_bytes_and_bad_files_are_named(idx_files, tmp_path):
    files = idx_files[0]
    run = lambda out, **kw: ingest_idx.run_config(ingest_idx.IngestIdxConfig(output_dir=str(out), **{**files, **kw}))
    run(tmp_path / "a", drop_true_labels=True)
    run(tmp_path / "b", drop_true_labels=True)
    for name in dataset_dir.read_summary(str(tmp_path / "a"))["splits"]["unlabeled"]["files"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    first = records.parse_image_record(next(iter(dataset_dir.iter_split_records(str(tmp_path / "a"), "unlabeled"))))
    assert first.hidden_label is None
    with pytest.raises(ValueError, match="--train_labels .*not IDX labels"):
        run(tmp_path / "c", train_labels=files["train_images"])
    with pytest.raises(ValueError, match="--test_images has 300 images but --test_labels 25000 labels"):
        run(tmp_path / "d", test_labels=files["train_labels"])
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x89PNG not idx")
    with pytest.raises(ValueError, match=r"--test_images .*junk: not an IDX file"):
        run(tmp_path / "e", test_images=str(junk))
