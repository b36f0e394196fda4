"""`noisystudent loop`: two iterations on tiny data, a manifest, and resuming after a crash."""

import json
import os

import pytest

from noisystudent import run_layout
from noisystudent.app import loop
from noisystudent.app.experiment import Experiment
from tests.digits_data import make_digits_dataset

TINY = {"image_size": 16, "batch_size": 16, "unlabel_ratio": 2, "train_steps": 20, "steps_per_epoch": 10,
        "warmup_steps": 0, "randaugment_ops": 1, "verbose": 0}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_digits_dataset(tmp_path_factory.mktemp("digits"), labels_per_class=5, test_size=200)


def _experiment(data, **fields):
    # A 20-step teacher is barely confident: keep every prediction so the students have data.
    return Experiment(**{"data": data, "models": ["cnn-small"] * 3, "select": {"num_image": 60, "min_threshold": 0.0},
                         "train": TINY, **fields})


def _config(data, run_dir, **fields):
    return loop.LoopConfig(_experiment(data, **fields), str(run_dir))


def test_two_iterations_write_a_manifest_and_resume_without_redoing(data, tmp_path, monkeypatch):
    from trainer import task

    real_train = task.train

    def crash_in_iteration_2(config, *args):  # the loop calls the trainer's typed entry
        if "iter2" in config.output_dir:
            raise RuntimeError("simulated preemption")
        return real_train(config, *args)

    monkeypatch.setattr(task, "train", crash_in_iteration_2)
    with pytest.raises(RuntimeError, match="simulated preemption"):
        loop.run_loop(_config(data, tmp_path, student={"train_steps": 30}))
    manifest = json.loads((tmp_path / loop.MANIFEST).read_text())
    assert manifest["steps"]["iter2/student"]["status"] == "failed"
    assert "simulated preemption" in manifest["steps"]["iter2/student"]["error"]
    done_before = {k: v["started"] for k, v in manifest["steps"].items() if v["status"] == "done"}
    assert set(done_before) == {"iter0/teacher", "iter1/predict", "iter1/select", "iter1/student",
                                "iter2/predict", "iter2/select"}

    monkeypatch.setattr(task, "train", real_train)
    rows = loop.run_loop(_config(data, tmp_path, student={"train_steps": 30}))
    manifest = json.loads((tmp_path / loop.MANIFEST).read_text())
    # Finished steps were skipped (same start time), the failed one ran and finished.
    for name, started in done_before.items():
        assert manifest["steps"][name]["started"] == started
    assert manifest["steps"]["iter2/student"]["status"] == "done"
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    assert all(0 <= r["top1_accuracy"] <= 1 for r in rows)
    assert rows[1]["pseudo_labeled"] > 0
    assert manifest["steps"]["iter2/predict"]["teacher"].endswith("iter1/student/model.keras")
    assert manifest["config"]["models"] == ["cnn-small"] * 3
    # run_layout names the folder each manifest step wrote (what tools that copy or read steps rely on).
    assert [name for name in manifest["steps"] if not os.listdir(run_layout.manifest_step_dir(str(tmp_path), name))] == []
    assert run_layout.manifest_step_dir("r", "iter1/select") == "r/iter1/pseudo"
    with pytest.raises(ValueError, match="'iter1/pseudo': not a manifest step name"):
        run_layout.manifest_step_dir("r", "iter1/pseudo")
    # The experiment's student section trains the students alone; the teacher keeps `train`'s.
    steps = {d: json.loads((tmp_path / d / "train_config.json").read_text())["train_steps"]
             for d in ("iter0/teacher", "iter1/student", "iter2/student")}
    assert steps == {"iter0/teacher": 20, "iter1/student": 30, "iter2/student": 30}
    assert "test top-1" in loop.format_table(rows)

    # The same run dir with other settings is refused before anything runs: its finished students would
    # otherwise be reused as if trained under the new settings.
    before = (tmp_path / loop.MANIFEST).read_text()
    changed = _config(data, tmp_path, models=["cnn-small", "cnn-medium", "cnn-medium"], student={"train_steps": 30},
                      select={"num_image": 30, "min_threshold": 0.0})
    with pytest.raises(ValueError, match=r"manifest.json records a run with other settings \(select.num_image: 60 -> "
                                         r"30; models: .*cnn-medium.*\).*new --run_dir"):
        loop.run_loop(changed)
    assert (tmp_path / loop.MANIFEST).read_text() == before


def test_resume_allows_more_or_fewer_iterations_another_run_dir_spelling_and_other_beam_flags():
    def recorded(run_dir="runs/a", models=("cnn-small",) * 3, beam_args=(), **fields):
        return loop.LoopConfig(Experiment(data="d", models=list(models), **fields), run_dir,
                               beam_args=beam_args).manifest_config()

    old = json.loads(json.dumps(recorded()))
    for models, run_dir in ((["cnn-small"] * 4, "runs/a"), (["cnn-small"] * 2, "runs/a/"), (["cnn-small"] * 3, "./runs/a")):
        loop.check_same_run(old, recorded(run_dir, models), "m")
    loop.check_same_run(old, recorded(beam_args=("--direct_num_workers=2",)), "m")
    with pytest.raises(ValueError, match=r"\(train.train_steps: 400 -> 9\)"):
        loop.check_same_run(old, recorded(train={"train_steps": 9}), "m")
    # A field the project added since the old run: only a value other than its default is a change.
    older = {**old, "train": {k: v for k, v in old["train"].items() if k != "ema_momentum"}}
    loop.check_same_run(older, recorded(), "m")
    with pytest.raises(ValueError, match=r"train.ema_momentum: \(absent\) -> 0.9"):
        loop.check_same_run(older, recorded(train={"ema_momentum": 0.9}), "m")
    # The students' own section: absent from older records, a change only when set.
    loop.check_same_run({k: v for k, v in old.items() if k != "student"}, recorded(), "m")
    with pytest.raises(ValueError, match=r"student.train_steps: \(absent\) -> 900"):
        loop.check_same_run(old, recorded(student={"train_steps": 900}), "m")


def test_loop_needs_a_student_and_the_splits(data, tmp_path):
    with pytest.raises(ValueError, match="at least one student"):
        _experiment(data, models=["cnn-small"])
    with pytest.raises(ValueError, match="no split 'extra'"):
        loop.run_loop(_config(data, tmp_path, unlabeled_split="extra"))


def test_the_predict_step_labels_with_the_recipes_eval_crop_and_takes_predict_settings(data, tmp_path):
    """Under the imagenet preset the teacher labels the center crop it was evaluated on (the original's
    predict.sh); the experiment's predict section (the loop's --predict_args) reaches predict's own fields."""
    from trainer.config import get_config

    cfg = _config(data, tmp_path, preset="imagenet", predict={"precision": "bfloat16", "prob_format": "top_k:3"})
    step = loop.predict_step_config(cfg, get_config("imagenet"), "t/model.keras", str(tmp_path / "p"), "iter0:t")
    assert step.center_crop and step.precision == "bfloat16" and step.prob_format == "top_k:3"
    assert not loop.predict_step_config(_config(data, tmp_path), get_config("digits"), "t", "p", "t").center_crop
    from_file = _config(data, tmp_path, predict={"center_crop": False, "batch_size": 64})
    step = loop.predict_step_config(from_file, get_config("imagenet"), "t", "p", "t")
    assert not step.center_crop and step.batch_size == 64  # an experiment's predict section wins over the recipe


def test_the_presets_eval_split_is_kept(data, tmp_path):
    with pytest.raises(ValueError, match="no split 'validation', the imagenet preset's eval split .*pass --eval_split"):
        loop.run_loop(_config(data, tmp_path / "a", preset="imagenet"))
    assert not (tmp_path / "a").exists()  # refused before writing anything


def test_a_run_recorded_by_the_previous_manifest_format_resumes_under_the_same_experiment(tmp_path):
    """Before the loop took an experiment whole, the manifest kept LoopConfig's flat fields and the resolved
    experiment under "experiment"; such a run resumes, and is refused under another experiment."""
    from noisystudent.app import experiment

    mnist = experiment.load("mnist_benchmark")
    older = {"data": "runs/mnist/l10/data-seed1", "run_dir": "r", "models": mnist.models, "preset": "digits",
             "num_image": 0, "seed": 1, "train_args": [], "beam_args": [], "experiment": experiment.resolved(mnist)}
    for exp, refused in ((mnist, None), (experiment.apply(mnist, {"select.num_image": 5}), "select.num_image: 0 -> 5")):
        (tmp_path / loop.MANIFEST).write_text(json.dumps({"config": older, "steps": {}}))
        if refused:
            with pytest.raises(ValueError, match=refused):
                loop.Manifest(str(tmp_path), loop.LoopConfig(exp, str(tmp_path), 1).manifest_config())
        else:
            loop.Manifest(str(tmp_path), loop.LoopConfig(exp, str(tmp_path), 1).manifest_config())


def test_a_run_made_at_the_old_selection_floor_is_refused_by_name_and_resumes_with_it_given(tmp_path):
    """The loop's floor became 0.7 (select's own default stays 0.3): a run dir recorded at 0.3 would
    otherwise reuse its 0.3 selections as if made at 0.7."""
    from noisystudent.app import experiment

    mnist = experiment.load("mnist_benchmark")
    recorded = loop.LoopConfig(experiment.apply(mnist, {"select.min_threshold": 0.3}), str(tmp_path), 1)
    (tmp_path / loop.MANIFEST).write_text(json.dumps({"config": recorded.manifest_config(), "steps": {}}))
    with pytest.raises(ValueError, match=r"select.min_threshold: 0.3 -> 0.7\): .*resume it as it ran "
                                         r"\(--config.select.min_threshold 0.3\)"):
        loop.Manifest(str(tmp_path), loop.LoopConfig(mnist, str(tmp_path), 1).manifest_config())
    old_floor = experiment.override(mnist, [("select.min_threshold", "0.3")])
    loop.Manifest(str(tmp_path), loop.LoopConfig(old_floor, str(tmp_path), 1).manifest_config())
