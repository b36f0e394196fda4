"""`noisystudent classify` and `features` on generated images with a model made in the test."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from model import build_model
from noisystudent import imagenet_classes, records
from noisystudent.app import classify
from trainer.export import export_saved_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("classify")
    model = build_model("cnn-small", 3, input_shape=(16, 16, 3))
    (root / "model").mkdir()
    model.save(str(root / "model" / "model.keras"))
    export_saved_model(model, str(root / "model" / "saved_model"), class_names=["cat", "dog", "emu"])
    rng = np.random.default_rng(0)
    pixels = {}
    for i in range(5):
        p = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        (root / "imgs" / "sub").mkdir(parents=True, exist_ok=True)
        path = root / "imgs" / ("sub" if i % 2 else "") / f"{i}.png"
        Image.fromarray(p).save(path)
        pixels[str(path)] = p
    (root / "imgs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return root, model, pixels


def test_classify_a_folder_with_names_from_the_model(setup, capsys):
    root, model, pixels = setup
    results = classify.run(["--model", str(root / "model" / "model.keras"), "--top_k", "2", "--json",
                            str(root / "imgs")])
    by_path = {r["image"]: r for r in results}
    assert set(by_path) == set(pixels) | {str(root / "imgs" / "broken.png")}
    assert "undecodable" in by_path[str(root / "imgs" / "broken.png")]["error"]
    for path, p in pixels.items():
        expected = model(p[None].astype("float32"), training=False).numpy()[0]
        top = by_path[path]["top"]
        assert top[0]["class"] == int(expected.argmax()) and len(top) == 2
        assert top[0]["name"] in ("cat", "dog", "emu")
        assert top[0]["probability"] == pytest.approx(float(expected.max()), abs=1e-4)
    assert len(capsys.readouterr().out.splitlines()) == 6


def test_features_as_npy_and_tfrecords(setup, tmp_path):
    root, model, pixels = setup
    summary = classify.run_features(["--model", str(root / "model" / "model.keras"), "--output",
                                     str(tmp_path / "emb.npy"), str(root / "imgs" / "*.png")])
    assert summary["failed"] == [str(root / "imgs" / "broken.png")] and summary["dim"] == 48
    emb = np.load(tmp_path / "emb.npy")
    ids = json.loads((tmp_path / "emb.ids.json").read_text())
    pooled = keras.Model(model.input, model.get_layer("avg_pool").output)
    np.testing.assert_allclose(emb[0], pooled(pixels[ids[0]][None].astype("float32"))[0], atol=1e-5)
    classify.run_features(["--model", str(root / "model" / "model.keras"), "--output",
                           str(tmp_path / "emb.tfrecord"), str(root / "imgs" / "sub")])
    rows = [tf.train.Example.FromString(r) for r in tf.data.TFRecordDataset(str(tmp_path / "emb.tfrecord"))
            .as_numpy_iterator()]
    assert len(rows) == 2 and len(rows[0].features.feature[records.EMBEDDING].float_list.value) == 48


def test_missing_images_are_a_clear_error(setup):
    root, _, _ = setup
    with pytest.raises(FileNotFoundError, match="nowhere.png: no such file"):
        classify.classify(str(root / "model" / "model.keras"), [str(root / "nowhere.png")])


def test_a_1000_class_model_without_names_shows_imagenet_names(setup, tmp_path, capsys):
    root, _, pixels = setup
    model = build_model("cnn-small", 1000, input_shape=(16, 16, 3))
    model.save(str(tmp_path / "imagenet.keras"))
    results = classify.run(["--model", str(tmp_path / "imagenet.keras"), "--top_k", "3",
                            str(root / "imgs" / "*.png")])
    names = imagenet_classes.imagenet_class_names()
    assert names[0] == "tench" and names[1] == "goldfish" and names[999] == "toilet tissue"
    assert imagenet_classes.imagenet_synsets()[0] == "n01440764"
    for r in results:
        if "top" in r:
            assert [t["name"] for t in r["top"]] == [names[t["class"]] for t in r["top"]]
    first = next(r for r in results if "top" in r)
    assert f"{first['top'][0]['name']} {first['top'][0]['probability']:.3f}" in capsys.readouterr().out
