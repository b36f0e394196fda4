"""Robustness: ImageNet-C corruptions (tfds' functions, deterministic per image) and `noisystudent evaluate`
(clean, corrupted, mCE against a reference, FGSM) on a digits model trained here."""

import json

import numpy as np
import pytest
from sklearn.datasets import load_digits

from noisystudent import corruptions, robustness
from beam_pipelines import evaluate
from noisystudent.app import cli
from tests.digits_data import make_digits_dataset


@pytest.fixture(scope="module")
def digit_pixels():
    """Ten real digits at 32 px, RGB uint8 (how the models see them)."""
    from PIL import Image

    digits = load_digits()
    return [np.asarray(Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)).resize((32, 32))
                       .convert("RGB")) for i in range(10)]


@pytest.mark.parametrize("name", list(corruptions.CORRUPTIONS))
def test_each_corruption_changes_the_image_keeps_it_uint8_and_is_deterministic_per_image(name, digit_pixels):
    image = digit_pixels[3]
    for severity in (1, 5):
        out = corruptions.corrupt(image, name, severity, seed=0, image_id="digits/3")
        assert out.dtype == np.uint8 and out.shape == image.shape
        assert not np.array_equal(out, image), (name, severity)
        assert np.array_equal(out, corruptions.corrupt(image, name, severity, seed=0, image_id="digits/3"))
    # Severity 5 moves the pixels further than severity 1, on average over the digits; but ImageNet-C's
    # elastic_transform, whose severity 1 is a large smooth warp (a big shift, the digit intact) and 5 a
    # small local one, orders its severities by what they do to recognition, not by pixel distance.
    change = {s: np.mean([np.abs(corruptions.corrupt(p, name, s, 0, f"d/{i}").astype(int) - p).mean()
                          for i, p in enumerate(digit_pixels)]) for s in (1, 5)}
    assert (change[5] > change[1]) == (name != "elastic_transform"), (name, change)


def test_random_corruptions_draw_per_image_and_seed_and_the_left_out_ones_say_why(digit_pixels):
    image = digit_pixels[0]
    a = corruptions.corrupt(image, "impulse_noise", 3, seed=0, image_id="a")
    assert not np.array_equal(a, corruptions.corrupt(image, "impulse_noise", 3, seed=0, image_id="b"))
    assert not np.array_equal(a, corruptions.corrupt(image, "impulse_noise", 3, seed=1, image_id="a"))
    with pytest.raises(ValueError, match="frost is left out: it needs ImageNet-C's frost photographs"):
        corruptions.parse_names("gaussian_noise,frost")
    with pytest.raises(ValueError, match="no corruption 'blurry'"):
        corruptions.parse_names("blurry")
    assert corruptions.parse_names("contrast,gaussian_noise") == ["gaussian_noise", "contrast"]  # ImageNet-C order
    with pytest.raises(ValueError, match="severities are 1 to 5"):
        corruptions.parse_severities("0,3")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A cnn-small trained on 100 digits per class (16 px: quick), and an untrained one."""
    import keras

    from model import build_model
    from noisystudent import dataset_dir, records

    root = tmp_path_factory.mktemp("robust")
    data = make_digits_dataset(root / "data", labels_per_class=100, test_size=300)
    from noisystudent.host_images import model_input

    parsed = [records.parse_image_record(r) for r in dataset_dir.iter_split_records(data, "labeled")]
    x = np.stack([model_input(r.encoded, 16) for r in parsed]).astype(np.float32)
    y = np.array([r.label for r in parsed])
    keras.utils.set_random_seed(0)
    model = build_model("cnn-small", 10, input_shape=(16, 16, 3))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=64, epochs=8, verbose=0)
    model.save(str(root / "trained.keras"))
    build_model("cnn-small", 10, input_shape=(16, 16, 3)).save(str(root / "untrained.keras"))
    return data, str(root / "trained.keras"), str(root / "untrained.keras"), root


def test_evaluate_writes_clean_corrupted_fgsm_and_an_mce_of_one_against_itself(trained, capsys):
    data, model, _, root = trained
    out = root / "self"
    argv = ["evaluate", "--model", model, "--reference", model, "--data", data, "--output_dir", str(out),
            "--corruptions", "gaussian_noise,pixelate,contrast", "--severities", "1,3,5",
            "--fgsm_epsilons", "0,4,32", "--batch_size", "128", "--max_images", "150"]
    assert cli.main(argv) == 0
    result = json.loads((out / evaluate.RESULTS_JSON).read_text())
    assert result["num_images"] == 150 and result["clean"]["top1"] > 0.8, result["clean"]
    assert set(result["corruptions"]) == {"gaussian_noise", "pixelate", "contrast"}
    assert set(result["corruptions"]["contrast"]) == {"1", "3", "5"}
    # A model against itself: every corruption's error ratio, and their mean, is exactly 1.
    assert result["mce"] == pytest.approx(1.0) and all(v == pytest.approx(1.0) for v in result["ce"].values())
    # Error grows with severity on average over the corruptions.
    mean_at = {s: np.mean([v[s]["top1"] for v in result["corruptions"].values()]) for s in ("1", "3", "5")}
    assert mean_at["1"] > mean_at["5"] and result["mean_corrupted_top1"] < result["clean"]["top1"]
    # FGSM: a step of 0 pixels is the clean accuracy; a large one costs accuracy.
    assert result["fgsm"]["0"]["top1"] == result["clean"]["top1"]
    assert result["fgsm"]["32"]["top1"] < result["fgsm"]["4"]["top1"] <= result["clean"]["top1"]
    printed = capsys.readouterr().out
    assert "| gaussian_noise |" in printed and "mCE relative to the reference: 1.000" in printed
    # The Beam job's figures are the one-process evaluation's (the benchmark's) on the same first 150 images.
    names, severities = corruptions.parse_names("gaussian_noise,pixelate,contrast"), [1, 3, 5]
    images = robustness.read_images(data, "test", 150)
    assert [r.image_id for r in images] == sorted(r.image_id for r in images)
    tally = robustness.score(images, {"model": robustness.Scorer(model, "--model")}, names, severities, [0, 4, 32],
                             batch_size=128)["model"]
    assert robustness.scores(tally, names, severities, [0, 4, 32]) == \
        {k: result[k] for k in ("clean", "corruptions", "mean_corrupted_top1", "fgsm")}
    # Every (model, condition) accounts for all 300 test records: 150 scored, 150 past --max_images.
    accounting = json.loads((out / "summary.json").read_text())["accounting"]
    assert len(accounting) == 2 * (1 + 9 + 3)
    assert accounting["reference fgsm/32"] == {"input": 300, "not selected (--max_images)": 150,
                                               "dead_letter_input": 0, "scored": 150, "dead_letter": 0}
    # Re-running gives the same figures: the corruptions are a function of (seed, image id).
    assert cli.main(argv + ["--overwrite"]) == 0
    again = json.loads((out / evaluate.RESULTS_JSON).read_text())
    assert {k: again[k] for k in ("clean", "corruptions", "fgsm", "ce")} == \
        {k: result[k] for k in ("clean", "corruptions", "fgsm", "ce")}


def test_a_better_model_has_an_mce_below_one_against_a_worse_reference(trained):
    data, model, untrained, root = trained
    result = evaluate.run_config(evaluate.EvaluateConfig(
        model=model, reference=untrained, data=data, output_dir=str(root / "vs"), corruptions="shot_noise,pixelate",
        severities="2,4", fgsm_epsilons="", max_images=120))["evaluation"]
    assert result["num_images"] == 120 and result["fgsm"] == {}
    assert result["mce"] < 1 and result["reference_scores"]["clean"]["top1"] < result["clean"]["top1"]


@pytest.mark.parametrize("argv, message", [
    (["--corruptions", "frost"], "frost is left out"),
    (["--severities", "6"], "severities are 1 to 5"),
    (["--fgsm_epsilons", "a"], "--fgsm_epsilons 'a': expected comma-separated numbers"),
    (["--split", "unlabeled"], "evaluate needs labeled images"),
])
def test_bad_evaluate_flags_are_one_line(argv, message, trained, capsys):
    data, model, _, root = trained
    assert cli.main(["evaluate", "--model", model, "--data", data, "--output_dir", str(root / "bad"), *argv]) == 1
    assert message in capsys.readouterr().err


def test_a_model_of_any_input_size_is_refused_naming_it(trained, tmp_path, capsys):
    import keras

    data, model, _, _ = trained
    inputs = keras.Input((None, None, 3))
    any_size = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(inputs)))
    any_size.save(tmp_path / "any_size.keras")
    assert cli.main(["evaluate", "--model", model, "--reference", str(tmp_path / "any_size.keras"), "--data", data,
                     "--output_dir", str(tmp_path / "out")]) == 1
    assert "--reference " + str(tmp_path / "any_size.keras") + ": its input has no fixed square size" in \
        capsys.readouterr().err


def test_the_evaluate_job_dead_letters_bad_records_and_a_damaged_shard_and_proves_every_count(trained, capsys):
    """Off the clean path: undecodable, unlabeled and unparseable records, and a truncated shard
    (--allow_damaged_input), each in the dead letters with its reason; every condition balances."""
    import shutil

    from noisystudent import dataset_dir, records
    from tests.tfrecord_files import write_tfrecord

    data, model, _, root = trained
    inputs = root / "odd"
    inputs.mkdir()
    (shard,) = dataset_dir.load_summary(data).split("test").files
    shutil.copy(f"{data}/{shard}", inputs / "test-a.tfrecord")
    good = list(dataset_dir.iter_split_records(data, "labeled"))[:40]
    write_tfrecord(inputs / "test-b.tfrecord", good[:3] + [
        records.encode_image_record("odd/undecodable", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, 3),
        records.encode_image_record("odd/unlabeled", records.parse_image_record(good[0]).encoded),
        b"not an Example"])
    write_tfrecord(inputs / "test-c.tfrecord", good[3:40])
    damaged = (inputs / "test-c.tfrecord").read_bytes()
    (inputs / "test-c.tfrecord").write_bytes(damaged[: len(damaged) // 2])
    out = root / "odd-out"
    argv = ["evaluate", "--model", model, "--data", str(inputs / "test-*.tfrecord"), "--output_dir", str(out),
            "--corruptions", "pixelate", "--severities", "2", "--fgsm_epsilons", "2"]
    assert cli.main(argv) == 1
    assert "test-c.tfrecord" in capsys.readouterr().err  # a damaged shard stops the job by default, named
    assert cli.main(argv + ["--allow_damaged_input"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    dead = [json.loads(line) for line in (out / "dead_letter.jsonl").read_text().splitlines()]
    reasons = {d.get("id"): d["reason"] for d in dead}
    assert "no label" in reasons["odd/unlabeled"] and "undecodable image" in reasons["odd/undecodable"]
    lost = next(d for d in dead if d["source"].endswith("test-c.tfrecord"))
    readable = summary["input_records"] - 3 - lost["records"]  # all but the 3 bad records and the lost tail
    assert 300 + 3 < readable < 300 + 3 + 37
    assert summary["evaluated"] == readable and json.loads((out / "evaluate.json").read_text())["num_images"] == readable
    for key in ("clean", "pixelate/2", "fgsm/2"):
        entry = summary["accounting"][f"model {key}"]
        assert entry["scored"] == readable and entry["dead_letter_input"] == 3 + lost["records"]
        assert entry["input"] == sum(v for k, v in entry.items() if k != "input")
