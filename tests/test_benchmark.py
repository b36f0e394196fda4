"""`noisystudent benchmark`: the CI slice of the MNIST benchmark (real digits written as IDX files, one seed,
few steps), the ceiling's data, and the summary a user reads off the table."""

import json

import numpy as np
import pytest
from sklearn.datasets import load_digits

from beam_pipelines import ingest_idx
from noisystudent import dataset_dir, records
from noisystudent.app import benchmark, ceiling, cli
from tests.test_ingest_idx import write_idx


@pytest.fixture(scope="module")
def digits_idx(tmp_path_factory):
    """scikit-learn's 1,797 real digits in MNIST's file format: 1,297 training images, 500 test images."""
    root = tmp_path_factory.mktemp("digits_idx")
    digits = load_digits()
    images = (digits.images * 255 / 16).round().astype(np.uint8)
    order = np.random.default_rng(0).permutation(len(images))
    train, test = order[:1297], order[1297:]
    files = {"train_images": write_idx(root / "train-images-idx3-ubyte", images[train]),
             "train_labels": write_idx(root / "train-labels-idx1-ubyte.gz", digits.target[train], gz=True),
             "test_images": write_idx(root / "t10k-images-idx3-ubyte", images[test]),
             "test_labels": write_idx(root / "t10k-labels-idx1-ubyte", digits.target[test])}
    return files, digits.target[train]


def ingest(files, out, **kw):
    ingest_idx.run_config(ingest_idx.IngestIdxConfig(output_dir=str(out), **{"labels_per_class": 10, **files, **kw}))
    return str(out)


def test_benchmark_slice_on_idx_files_writes_the_table_with_ceiling_and_precision(digits_idx, tmp_path, capsys):
    files, _ = digits_idx
    for seed in (0, 1):
        ingest(files, tmp_path / f"data-seed{seed}", seed=seed)
    # A 30-step teacher is nearly uniform (few predictions reach even 0.3, by machine): floor 0 keeps each
    # class's most confident, and --max_copies keeps a class it rarely predicts from being copied 100x.
    argv = ["benchmark", "--data", str(tmp_path / "data-seed{seed}"), "--run_dir", str(tmp_path / "bench"),
            "--seeds", "0,1", "--models", "cnn-small,cnn-medium", "--train_args", "--train_steps 30 --verbose 0",
            "--min_threshold", "0", "--select_args", "--max_copies 10",
            "--robustness", "--evaluate_args",
            "--corruptions gaussian_noise,contrast --severities 1,5 --fgsm_epsilons 0,16 --max_images 100"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    result = json.loads((tmp_path / "bench" / "benchmark.json").read_text())
    assert [r["iteration"] for r in result["rows"]] == [0, 1] and result["seeds"] == [0, 1]
    teacher, student = result["rows"]
    assert teacher["labeled"] == 100 and len(teacher["per_seed_top1"]) == 2 and student["pseudo_labeled"] > 0
    # The ceiling trains on every training label: the 100 labeled + 1,197 unlabeled images' true classes.
    assert result["ceiling"]["labeled"] == 1297 and len(result["ceiling"]["per_seed_top1"]) == 2
    # ... with as many images per step as a student sees (32 labeled + 3 x 32 pseudo-labeled), not the teacher's 32.
    config = lambda *path: json.loads((tmp_path.joinpath("bench", "seed0", *path) / "train_config.json").read_text())
    assert config("ceiling")["batch_size"] == 128 and config("loop", "iter0", "teacher")["batch_size"] == 32
    # ... and with the last student's model: the larger student's ceiling, the most it could reach.
    assert config("ceiling")["model"] == "cnn-medium" == result["ceiling"]["model"]
    assert config("loop", "iter0", "teacher")["model"] == "cnn-small"
    # The larger student's model also trains as its teacher did (labels alone, same recipe): its own reference.
    alone = result["labeled_only"]
    assert alone["model"] == "cnn-medium" and alone["labeled"] == 100 and len(alone["per_seed_top1"]) == 2
    differs = {k for k, v in config("labeled_only").items() if config("loop", "iter0", "teacher")[k] != v}
    assert differs == {"model", "output_dir"}
    assert result["summary"]["gain_over_labeled_only"] == pytest.approx(student["mean_top1"] - alone["mean_top1"])
    assert 0 < student["mean_precision"] <= 1 and set(student["mean_class_precision"]) <= set("0123456789")
    assert result["summary"]["seeds_beating_teacher"] in (0, 1, 2)
    # Each seed read its own dataset: two different labeled subsets.
    labeled = [{r.image_id for r in map(records.parse_image_record,
                                        dataset_dir.iter_split_records(str(tmp_path / f"data-seed{s}"), "labeled"))}
               for s in (0, 1)]
    assert labeled[0] != labeled[1]
    markdown = (tmp_path / "bench" / "benchmark.md").read_text()
    assert markdown.index("the method's own gain, over cnn-medium") < markdown.index("gain of the last student")
    for text in ("| 0 | cnn-small | teacher (labeled only) | 100 |", "| - | cnn-medium | ceiling (all labels) | 1,297 |",
                 "| - | cnn-medium | labeled only (no pseudo-labels) | 100 |", "the method's own gain",
                 "gain of the last student", "of 2 seeds", "kept pseudo-labels that match"):
        assert text in markdown and text in out
    # Robustness: every model of each seed (teacher, student, both references) on the same corrupted and
    # FGSM images, mCE against the seed's teacher, in the table and in each seed's report.html.
    robust = result["robustness"]
    assert set(robust["models"]) == {"iter0", "iter1", "labeled_only", "ceiling"} and robust["num_images"] == 100
    assert robust["models"]["iter0"]["mce"]["per_seed_top1"] == [1.0, 1.0]  # the teacher against itself
    assert robust["models"]["iter1"]["fgsm"]["0"] == robust["models"]["iter1"]["clean"]
    assert set(result["summary"]["robustness_gain"]) == {"clean", "corrupted", "fgsm_0", "fgsm_16"}
    for text in ("### Robustness: 100 test images", "| mCE vs teacher |", "FGSM 16 px",
                 "the last student over the equally noised teacher: clean"):
        assert text in markdown, text
    page = (tmp_path / "bench" / "seed1" / "loop" / "report.html").read_text()
    assert 'id="robustness"' in page and "FGSM 16 px" in page and 'alt="top-1 per corruption"' in page
    # Re-running resumes: every step is done, nothing trains again, the same table comes back.
    assert cli.main(argv) == 0
    again = json.loads((tmp_path / "bench" / "benchmark.json").read_text())
    assert again["rows"] == result["rows"] and again["ceiling"] == result["ceiling"]
    assert again["robustness"] == result["robustness"]  # robustness.json reused, its settings the same
    # Compute time comes from what each step recorded, so a resumed run still reports it.
    assert again["seconds_per_seed"] == result["seconds_per_seed"] and min(again["seconds_per_seed"].values()) > 1


def test_ceiling_data_is_every_training_image_with_its_true_class(digits_idx, tmp_path):
    files, train_labels = digits_idx
    data = ingest(files, tmp_path / "data", seed=3)
    summary = ceiling.write_ceiling_data(data, str(tmp_path / "ceiling"))
    assert summary.split("labeled").records == 1297
    assert summary.split("labeled").labels == {c: int(n) for c, n in enumerate(np.bincount(train_labels))}
    for r in map(records.parse_image_record, dataset_dir.iter_split_records(str(tmp_path / "ceiling"), "labeled")):
        assert r.label == train_labels[int(r.image_id.split("/")[-1])] and r.hidden_label is None


def test_ceiling_refuses_data_without_true_classes_naming_the_record(digits_idx, tmp_path):
    data = ingest(digits_idx[0], tmp_path / "data", drop_true_labels=True)
    with pytest.raises(ValueError, match=r"unlabeled record 'mnist/train/\d+' keeps no true class"):
        ceiling.write_ceiling_data(data, str(tmp_path / "ceiling"))
    assert not (tmp_path / "ceiling" / "summary.json").exists()


def test_summary_counts_wins_per_seed_and_the_share_of_the_gap():
    rows = benchmark.aggregate({
        0: [{"model": "m", "role": "t", "labeled": 10, "pseudo_labeled": 0, "top1_accuracy": 0.90},
            {"model": "m", "role": "s", "labeled": 10, "pseudo_labeled": 50, "top1_accuracy": 0.95}],
        1: [{"model": "m", "role": "t", "labeled": 10, "pseudo_labeled": 0, "top1_accuracy": 0.92},
            {"model": "m", "role": "s", "labeled": 10, "pseudo_labeled": 70, "top1_accuracy": 0.91}]})
    assert rows[1]["pseudo_labeled"] == 60 and rows[0]["mean_top1"] == pytest.approx(0.91)
    summary = benchmark.summarise(rows, {"mean_top1": 0.99})
    assert summary["seeds_beating_teacher"] == 1 and not summary["beats_teacher_on_every_seed"]
    assert summary["gain"] == pytest.approx(0.02) and summary["gap_closed"] == pytest.approx(0.02 / 0.08)
    assert "gain_over_labeled_only" not in summary
    # A larger student: its gain over its own model trained on the labels alone, and that model's gap.
    summary = benchmark.summarise(rows, {"mean_top1": 0.99}, {"mean_top1": 0.92})
    assert summary["gain"] == pytest.approx(0.02) and summary["gain_over_labeled_only"] == pytest.approx(0.01)
    assert summary["gap_closed_over_labeled_only"] == pytest.approx(0.01 / 0.07)
