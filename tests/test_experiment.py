"""One experiment, one file: shipped experiments resolve, dotted overrides, refusals; the demo is its file."""

import argparse
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
                     "--config.models", "efficientnet-b0,efficientnet-b2", "--config.student.train_steps", "90",
                     "--print_config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["student"] == {"train_steps": 90}  # the students' own budget; the teacher's stays 50
    assert printed["select"]["num_image"] == 1000 and printed["seeds"] == [3, 4]
    assert printed["train"]["train_steps"] == 50 and printed["predict"]["precision"] == "bfloat16"
    assert printed["models"] == ["efficientnet-b0", "efficientnet-b2"]
    assert printed["select"]["min_threshold"] == 0.3  # the file's value stays where not overridden


@pytest.mark.parametrize("dotted, value", [("seeds", [0, 1, 2]), ("models", ["cnn-small", "cnn-medium"]),
                                           ("select.min_threshold", 0.7), ("select.no_upsample", True),
                                           ("select.no_upsample", False), ("predict.precision", "bfloat16")])
def test_a_value_spelled_as_a_flag_parses_back_to_itself(dotted, value):
    """The help's defaults and the resume hint's flags are spelled by flag_spelling: each must read back."""
    assert experiment.parse_value(dotted, experiment.flag_spelling(value)) == value


@pytest.mark.parametrize("argv, message", [
    (["--config.select.nope", "1"], "SelectConfig has no field 'nope'"),
    (["--config.select.num_image", "many"], "--config.select.num_image 'many': expected an integer"),
    (["--config.colour", "red"], "--config.colour: not a field of the experiment"),
    (["--num_image", "5", "--config.select.num_image", "6"],
     "--num_image and --config.select.num_image both set select.num_image: give it once"),
    (["--min_threshold", "0.4", "--select_args", "--min_threshold 0.5"],
     "--min_threshold and --select_args '--min_threshold' both set select.min_threshold: give it once"),
    (["--train_args", "--mode online"], "'train.mode': the loop sets it for each step"),
    (["--config.student.mode", "online"], "'student.mode': the loop sets it for each step"),
    (["--config.student.steps", "9"], "TrainConfig has no field 'steps'"),
    (["--predict_args", "--nope 1"], "--predict_args: unknown flag(s) --nope"),
])
def test_a_bad_override_is_one_line_naming_it(argv, message, capsys):
    assert cli.main(["loop", "--config", "svhn", *argv, "--print_config"]) == 1
    assert message in capsys.readouterr().err


def test_the_loops_flags_are_shorthand_for_the_experiments_fields(capsys):
    """Over a file, or over the defaults: each flag sets the field its --config.X spelling would."""
    argv = ["--models", "efficientnet-b0,efficientnet-b2", "--num_image", "900", "--min_threshold", "0.5",
            "--seed", "7", "--eval_split", "validation", "--train_args", "--train_steps 50 --saved_model false",
            "--predict_args", "--precision bfloat16", "--select_args=--no_upsample", "--print_config"]
    assert cli.main(["loop", "--config", "svhn", *argv]) == 0
    short = json.loads(capsys.readouterr().out)
    assert cli.main(["loop", "--config", "svhn", "--config.models", "efficientnet-b0,efficientnet-b2",
                     "--config.select.num_image", "900", "--config.select.min_threshold", "0.5", "--config.seeds", "7",
                     "--config.eval_split", "validation", "--config.train.train_steps", "50",
                     "--config.train.saved_model", "false", "--config.predict.precision", "bfloat16",
                     "--config.select.no_upsample", "true", "--print_config"]) == 0
    assert short == json.loads(capsys.readouterr().out)
    assert short["seeds"] == [7] and short["train"]["saved_model"] is False and short["select"]["no_upsample"] is True
    assert short["train"]["optimizer"] == "rmsprop"  # the rest is the file's
    # Without --config the flags lay over the Experiment dataclass's defaults: one spelling of each default.
    assert cli.main(["loop", "--data", "d", "--print_config"]) == 0
    defaults = json.loads(capsys.readouterr().out)
    assert defaults == experiment.resolved(experiment.Experiment(data="d"))
    assert defaults["models"] == ["cnn-small", "cnn-medium", "cnn-medium"] and defaults["preset"] == "digits"
    assert defaults["select"]["min_threshold"] == 0.7 and defaults["select"]["num_image"] == 0  # the loop's, not select's 0.3
    help_text = " ".join(experiment.add_flags(argparse.ArgumentParser(), benchmark=False).format_help().split())
    assert "lowest confidence. (default 0.7; select's own, the original's: 0.3)" in help_text
    assert cli.main(["loop", "--run_dir", "r"]) == 1
    assert "--data is required (or --config F" in capsys.readouterr().err


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


def test_the_demo_and_the_mnist_benchmark_are_their_experiment_files_with_the_settings_they_had():
    """What `noisystudent demo` and bench/mnist_benchmark.sh ran before their files, field for field."""
    demo = experiment.resolved(experiment.load("digits_demo"))
    assert (demo["models"], demo["seeds"], demo["preset"], demo["ceiling"]) == (["cnn-small"] * 3, [0, 1, 2],
                                                                                  "digits", True)
    assert demo["train"] == {**experiment.resolved(experiment.Experiment(data="d"))["train"], "verbose": 0}
    assert benchmark.BenchmarkConfig(experiment.load("digits_demo"), "runs/demo").data_for(1) == "runs/demo/seed1/data"
    mnist = experiment.load("mnist_benchmark")
    assert mnist.models == ["cnn-small", "cnn-medium", "cnn-medium"] and mnist.seeds == [0, 1, 2]
    assert loop.LoopConfig(mnist, "runs/x", 1).data() == "runs/mnist/l10/data-seed1"
    assert experiment.resolved(mnist)["train"]["train_steps"] == 2000


def test_a_run_dir_is_not_resumed_under_a_changed_experiment():
    """The manifest records the resolved experiment; check_same_run refuses another one."""
    first = loop.LoopConfig(experiment.load("svhn"), "runs/svhn", 0).manifest_config()
    changed = loop.LoopConfig(experiment.override(experiment.load("svhn"), [("select.num_image", "1000")]),
                              "runs/svhn", 0).manifest_config()
    loop.check_same_run(json.loads(json.dumps(first)), first, "m.json")
    with pytest.raises(ValueError, match=r"other settings \(select.num_image: 53113 -> 1000\)"):
        loop.check_same_run(json.loads(json.dumps(first)), changed, "m.json")


def test_a_benchmarks_run_dir_in_the_data_is_the_benchmarks_not_each_loops():
    cfg = benchmark.BenchmarkConfig(experiment.load("digits_demo"), "runs/demo")
    assert cfg.loop(2).data() == cfg.data_for(2) == "runs/demo/seed2/data"
    assert cfg.loop(2).run_dir == "runs/demo/seed2/loop"
