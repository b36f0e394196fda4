"""One experiment, one file: shipped experiments resolve, dotted overrides, refusals; the demo is its file."""

import dataclasses
import json

import pytest

from noisystudent.app import experiment
from noisystudent.app import benchmark, cli, loop

SHIPPED = ("digits_demo", "mnist_benchmark", "svhn", "imagenet_b7_l2")


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_experiment_prints_each_steps_resolved_settings(name, capsys):
    assert cli.main(["loop", "--config", name, "--print_config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert {"train", "predict", "select", "models", "seeds", "data"} <= set(printed)
    assert printed["predict"]["center_crop"] == printed["train"]["eval_center_crop"]  # labels what it evaluates
    assert printed["eval_split"]  # the preset's when the file leaves it empty


def test_the_imagenet_experiment_labels_the_originals_center_crop_and_evaluates_on_validation(capsys):
    assert cli.main(["benchmark", "--config", "imagenet_b7_l2", "--print_config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["models"] == ["efficientnet-b7"] + ["efficientnet-l2"] * 3
    assert printed["predict"]["center_crop"] and printed["predict"]["precision"] == "float32"
    assert printed["eval_split"] == "validation" and printed["train"]["precision"] == "float32"
    assert printed["select"]["num_image"] == 130000 and printed["select"]["min_threshold"] == 0.3
    assert printed["train"]["optimizer"] == "rmsprop" and printed["train"]["batch_size"] == 4096


def test_any_field_is_overridden_by_its_dotted_name(capsys):
    assert cli.main(["loop", "--config", "svhn", "--config.select.num_image", "1000", "--config.seeds=3,4",
                     "--config.train.train_steps", "50", "--config.predict.precision", "bfloat16",
                     "--config.models", "efficientnet-b0,efficientnet-b2", "--print_config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["select"]["num_image"] == 1000 and printed["seeds"] == [3, 4]
    assert printed["train"]["train_steps"] == 50 and printed["predict"]["precision"] == "bfloat16"
    assert printed["models"] == ["efficientnet-b0", "efficientnet-b2"]
    assert printed["select"]["min_threshold"] == 0.3  # the file's value stays where not overridden


@pytest.mark.parametrize("argv, message", [
    (["--config.select.nope", "1"], "SelectConfig has no field 'nope'"),
    (["--config.select.num_image", "many"], "--config.select.num_image 'many': expected an integer"),
    (["--config.colour", "red"], "--config.colour: not a field of the experiment"),
    (["--models", "a,b"], "--models with --config: set them in the experiment or as --config.FIELD VALUE"),
])
def test_a_bad_override_is_one_line_naming_it(argv, message, capsys):
    assert cli.main(["loop", "--config", "svhn", *argv, "--print_config"]) == 1
    assert message in capsys.readouterr().err


def test_an_experiment_file_is_checked_against_each_stages_fields(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text("from noisystudent.app.experiment import Experiment\n\n"
                    "def get_config():\n"
                    "    return Experiment(data='d', models=['cnn-small', 'cnn-small'], select={'min_treshold': 0.5})\n")
    with pytest.raises(ValueError, match="experiment field 'select.min_treshold': SelectConfig has no such field"):
        experiment.load(str(path))
    with pytest.raises(ValueError, match="'train.output_dir': the loop sets it for each step"):
        experiment.Experiment(data="d", models=["a", "b"], train={"output_dir": "x"})
    with pytest.raises(ValueError, match="'select.num_image': '5' is not an integer"):
        experiment.Experiment(data="d", models=["a", "b"], select={"num_image": "5"})
    with pytest.raises(FileNotFoundError, match="no shipped experiment of that name .*digits_demo"):
        experiment.load("no_such_experiment")


def test_the_demo_is_its_experiment_file_with_the_settings_it_had():
    """What `noisystudent demo` ran before its experiment file, field for field (the same figures)."""
    cfg = benchmark.from_experiment(experiment.load("digits_demo"), "runs/demo")
    assert cfg.experiment == experiment.resolved(experiment.load("digits_demo"))  # what each manifest records
    assert dataclasses.replace(cfg, experiment={}) == benchmark.BenchmarkConfig(
        data="runs/demo/seed{seed}/data", run_dir="runs/demo", models=["cnn-small"] * 3, seeds=[0, 1, 2],
        preset="digits", ceiling=True, title="Noisy Student on digits", train_overrides={"verbose": 0})
    one = loop.from_experiment(experiment.load("mnist_benchmark"), "runs/x", 1)
    assert one.data == "runs/mnist/l10/data-seed1" and one.train_overrides["train_steps"] == 2000


def test_a_run_dir_is_not_resumed_under_a_changed_experiment():
    """The manifest records the resolved experiment; check_same_run refuses another one."""
    first = loop.from_experiment(experiment.load("svhn"), "runs/svhn", 0)
    changed = loop.from_experiment(experiment.override(experiment.load("svhn"), [("select.num_image", "1000")]),
                                   "runs/svhn", 0)
    loop.check_same_run(json.loads(json.dumps(dataclasses.asdict(first))), dataclasses.asdict(first), "m.json")
    with pytest.raises(ValueError, match=r"other settings \(experiment.select.num_image: 53113 -> 1000; "
                                         r"num_image: 53113 -> 1000\)"):
        loop.check_same_run(json.loads(json.dumps(dataclasses.asdict(first))), dataclasses.asdict(changed), "m.json")
