"""`noisystudent ingest-digits`: the embedded real data, split by seed."""

import collections
import filecmp

import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

from beam_pipelines import ingest_digits
from noisystudent import dataset_dir, records


def _read(out_dir, split):
    return [records.parse_image_record(r) for r in dataset_dir.iter_split_records(str(out_dir), split)]


def test_splits_sizes_labels_and_disjoint_ids(tmp_path):
    summary = ingest_digits.run(["--output_dir", str(tmp_path), "--labels_per_class", "5",
                                 "--test_size", "300", "--seed", "3"])
    counts = {s: v["records"] for s, v in summary["splits"].items()}
    assert counts == {"labeled": 50, "test": 300, "unlabeled": 1797 - 350}
    splits = {s: _read(tmp_path, s) for s in ingest_digits.SPLITS}
    ids = [r.image_id for rs in splits.values() for r in rs]
    assert len(ids) == len(set(ids)) == 1797
    assert collections.Counter(r.label for r in splits["labeled"]) == {c: 5 for c in range(10)}
    assert {r.label for r in splits["unlabeled"]} == {records.UNLABELED}
    # Labels and pixels match scikit-learn's image with the same index.
    digits = load_digits()
    for r in splits["test"][:20]:
        index = int(r.image_id.split("/")[1])
        assert r.label == digits.target[index]
        pixels = tf.io.decode_png(r.encoded).numpy()
        assert pixels.shape == (32, 32, 3)
        np.testing.assert_array_equal(pixels, ingest_digits.upscale(digits.images[index], 32))


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    ingest_digits.run(["--output_dir", str(a), "--seed", "1"])
    ingest_digits.run(["--output_dir", str(b), "--seed", "1"])
    ingest_digits.run(["--output_dir", str(c), "--seed", "2"])
    for split in ingest_digits.SPLITS:
        for name in dataset_dir.read_summary(str(a))["splits"][split]["files"]:
            assert filecmp.cmp(a / name, b / name, shallow=False)
    labeled = lambda d: {r.image_id for r in _read(d, "labeled")}
    assert labeled(a) != labeled(c)


def test_refuses_to_overwrite_and_asks_for_too_many_labels(tmp_path):
    ingest_digits.run(["--output_dir", str(tmp_path)])
    with pytest.raises(FileExistsError, match="--overwrite"):
        ingest_digits.run(["--output_dir", str(tmp_path)])
    with pytest.raises(ValueError, match="--labels_per_class 170"):
        ingest_digits.run(["--output_dir", str(tmp_path / "x"), "--labels_per_class", "170"])


def test_the_summary_is_read_once_into_a_typed_contract_and_a_damaged_one_is_named(tmp_path):
    ingest_digits.run_config(ingest_digits.IngestDigitsConfig(str(tmp_path), labels_per_class=3))
    summary = dataset_dir.load_summary(str(tmp_path))
    assert summary.num_classes == 10 and summary.class_names == [str(c) for c in range(10)]
    assert summary.split("labeled").records == 30 and summary.split("labeled").labels == {c: 3 for c in range(10)}
    assert summary.split("unlabeled").labels == {records.UNLABELED: 1797 - 500 - 30}
    assert all(f.startswith(str(tmp_path)) for f in summary.split_files("test"))
    with pytest.raises(KeyError, match="no split 'extra'.*labeled"):
        summary.split("extra")
    path = tmp_path / dataset_dir.SUMMARY_FILE
    path.write_text(path.read_text().replace('"records"', '"rekords"'))
    with pytest.raises(ValueError, match=r"summary.json: malformed 'splits'"):
        dataset_dir.load_summary(str(tmp_path))
    path.write_text("{not json")
    with pytest.raises(ValueError, match="summary.json: not valid JSON"):
        dataset_dir.load_summary(str(tmp_path))
