"""`noisystudent predict`: the teacher labels every image once; bad records go to the dead letter file."""

import json

import numpy as np
import pytest
import tensorflow as tf

from beam_pipelines import predict
from model import build_model
from noisystudent import dataset_dir, records
from noisystudent.errors import DamagedInputError
from tests.tfrecord_files import write_tfrecord
from trainer.export import export_saved_model


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    d = tmp_path_factory.mktemp("teacher")
    model = build_model("cnn-small", 5, input_shape=(16, 16, 3))
    model.save(str(d / "t.keras"))
    export_saved_model(model, str(d / "saved"))
    return model, d


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Two shards of image records: 40 PNGs of varied sizes, ids img/00..39."""
    d = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    pixels, shards = {}, [[], []]
    for i in range(40):
        size = (16, 16) if i % 3 else (20, 24)
        p = rng.integers(0, 256, size + (3,), dtype=np.uint8)
        pixels[f"img/{i:02d}"] = p
        shards[i % 2].append(records.encode_image_record(f"img/{i:02d}", tf.io.encode_png(p).numpy()))
    for k, shard in enumerate(shards):
        write_tfrecord(d / f"part-{k}.tfrecord", shard)
    return d, pixels


def _predictions(out_dir, split=predict.PREDICTIONS_SPLIT):
    return [records.parse_prediction(r) for r in dataset_dir.iter_split_records(str(out_dir), split)]


@pytest.mark.parametrize("model_file", ["t.keras", "saved"])
def test_predictions_equal_the_model_and_cover_every_id_once(teacher, images, tmp_path, model_file):
    model, tdir = teacher
    idir, pixels = images
    summary = predict.run(["--input", str(idir / "part-*.tfrecord"), "--model", str(tdir / model_file),
                           "--output_dir", str(tmp_path), "--batch_size", "16", "--teacher_name", "t0"])
    preds = _predictions(tmp_path)
    assert sorted(p.image_id for p in preds) == sorted(pixels)
    assert summary["input_records"] == summary["predicted"] == 40 and summary["dead_letter"] == 0
    expected = {}
    for image_id, p in pixels.items():
        resized = tf.image.resize(p.astype(np.float32), [16, 16], antialias=True)
        expected[image_id] = model(resized[None], training=False).numpy()[0]
    for p in preds:
        np.testing.assert_allclose(p.probabilities, expected[p.image_id], atol=2e-5)
        assert p.teacher == "t0" and p.source.endswith(f"part-{int(p.image_id[-2:]) % 2}.tfrecord")
    hist = summary["predicted_class_histogram"]
    assert sum(hist.values()) == 40


def test_bad_records_go_to_the_dead_letter_file(teacher, images, tmp_path):
    _, tdir = teacher
    idir, pixels = images
    png = tf.io.encode_png(pixels["img/00"]).numpy()
    no_image = tf.train.Example()
    no_image.features.feature[records.IMAGE_ID].bytes_list.value.append(b"bad/no-image")
    write_tfrecord(tmp_path / "bad.tfrecord", [
        records.encode_image_record("bad/truncated", png[: len(png) // 2]),
        records.encode_image_record("good/one", png),
        records.encode_image_record("bad/not-an-image", b"hello world"),
        no_image.SerializeToString(),
        records.encode_image_record("good/two", png),
        records.encode_image_record("bad/truncated-2", png[: len(png) // 3]),
        records.encode_image_record("good/three", png),
    ])
    # A file cut off in its third record stops the job, naming it; with --allow_damaged_input the first
    # two are labelled and the rest is one dead letter.
    write_tfrecord(tmp_path / "cut.tfrecord", [records.encode_image_record(f"cut/{i}", png) for i in range(3)])
    data = (tmp_path / "cut.tfrecord").read_bytes()
    (tmp_path / "cut.tfrecord").write_bytes(data[: len(data) - 20])
    out = tmp_path / "out"
    argv = ["--input", str(tmp_path / "*.tfrecord"), "--model", str(tdir / "t.keras"), "--output_dir", str(out),
            "--batch_size", "4"]
    with pytest.raises(DamagedInputError, match="cut.tfrecord: 2 records readable.*--allow_damaged_input"):
        predict.run(argv)
    assert not (out / "summary.json").exists()
    summary = predict.run(argv + ["--allow_damaged_input"])
    dead = {d["id"]: d for d in map(json.loads, (out / "dead_letter.jsonl").read_text().splitlines())}
    assert set(dead) == {"bad/truncated", "bad/truncated-2", "bad/not-an-image", "bad/no-image", ""}
    assert "undecodable" in dead["bad/truncated"]["reason"] and "undecodable" in dead["bad/truncated-2"]["reason"]
    assert "not a PNG" in dead["bad/not-an-image"]["reason"]
    assert "'image/encoded'" in dead["bad/no-image"]["reason"]
    assert dead["bad/truncated"]["source"].endswith("bad.tfrecord")
    assert dead[""]["source"].endswith("cut.tfrecord") and "after record 2" in dead[""]["reason"]
    assert sorted(p.image_id for p in _predictions(out)) == ["cut/0", "cut/1", "good/one", "good/three",
                                                             "good/two"]
    assert summary["input_records"] == 7 + 3 == summary["predicted"] + summary["dead_letter"]


def test_relabel_keeps_images_and_ids_and_replaces_probabilities(teacher, images, tmp_path):
    _, tdir = teacher
    idir, pixels = images
    old = np.full(5, 0.2, np.float32)
    pseudo = [records.encode_pseudo_labeled(i, tf.io.encode_png(p).numpy(), old, "old-teacher")
              for i, p in pixels.items()]
    pseudo.append(pseudo[0])  # a duplicated image, as the selection job writes them
    write_tfrecord(tmp_path / "train-00000-of-00001.tfrecord", pseudo)
    out = tmp_path / "out"
    predict.run(["--input", str(tmp_path / "train-*.tfrecord"), "--relabel", "--model", str(tdir / "t.keras"),
                 "--output_dir", str(out), "--teacher_name", "better"])
    relabeled = [records.parse_pseudo_labeled(r) for r in dataset_dir.iter_split_records(str(out), "train")]
    assert sorted(r.image_id for r in relabeled) == sorted(list(pixels) + ["img/00"])
    by_id = {r.image_id: r for r in relabeled}
    for image_id, p in pixels.items():
        r = by_id[image_id]
        np.testing.assert_array_equal(tf.io.decode_png(r.encoded).numpy(), p)
        assert r.teacher == "better" and not np.allclose(r.probabilities, old)


def test_missing_model_is_a_clear_error(images, tmp_path):
    idir, _ = images
    with pytest.raises(FileNotFoundError, match="--model"):
        predict.run(["--input", str(idir / "part-*.tfrecord"), "--model", str(tmp_path / "nope.keras"),
                     "--output_dir", str(tmp_path / "o")])


def test_a_model_that_cannot_load_is_refused_before_the_pipeline_starts(images, tmp_path):
    import zipfile

    idir, _ = images
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"this is not a model" * 100)
    not_keras = tmp_path / "other.keras"
    with zipfile.ZipFile(not_keras, "w") as z:
        z.writestr("weights.bin", b"\x00" * 10)
    folder = tmp_path / "not_a_saved_model"
    folder.mkdir()
    cases = {garbage: "not a Keras model file", not_keras: "no config.json, model.weights.h5 inside",
             folder: "neither a .keras file nor a SavedModel directory"}
    for path, reason in cases.items():
        out = tmp_path / f"out-{path.name}"
        with pytest.raises(ValueError, match=rf"--model {path}: .*{reason}"):
            predict.run(["--input", str(idir / "part-*.tfrecord"), "--model", str(path),
                         "--output_dir", str(out)])
        assert not out.exists()  # refused before anything was written


def test_a_bfloat16_teacher_labels_like_the_float32_one(teacher, images, tmp_path):
    from noisystudent.teacher import in_precision, load_teacher

    model, tdir = teacher
    idir, pixels = images
    mixed = in_precision(model, "bfloat16")
    assert mixed.get_layer("predictions").compute_dtype == "float32"
    assert {layer.compute_dtype for layer in mixed.layers if layer.weights} >= {"bfloat16"}
    assert all(w.dtype == "float32" for w in mixed.weights)
    encoded = [tf.io.encode_png(p).numpy() for p in pixels.values()]
    full = load_teacher(str(tdir / "t.keras")).label(encoded)
    half = load_teacher(str(tdir / "t.keras"), precision="bfloat16").label(encoded)
    np.testing.assert_allclose(half, full, atol=0.05)
    assert (half.argmax(1) == full.argmax(1)).mean() >= 0.9
    summary = predict.run(["--input", str(idir / "part-*.tfrecord"), "--model", str(tdir / "t.keras"),
                           "--output_dir", str(tmp_path / "o"), "--precision", "bfloat16"])
    assert summary["predicted"] == len(pixels)
    with pytest.raises(ValueError, match="needs the .keras model"):
        load_teacher(str(tdir / "saved"), precision="bfloat16")
