"""The `noisystudent` command: every job is listed and documents its flags."""

import json
import subprocess
import sys

import pytest

from noisystudent.app import cli


# What a user finds in the README, written out: a command dropped from the CLI fails here.
EXPECTED_COMMANDS = {
    "demo": "--seeds", "loop": "--models", "ingest-digits": "--labels_per_class", "ingest-svhn": "--mat_dir",
    "ingest-folder": "--unlabeled_dir", "predict": "--precision", "select": "--num_image",
    "train": "--preset", "classify": "--top_k", "features": "--layer", "dataflow": "--max_workers",
    "submit-training": "--tpu", "report": "run_dir", "ingest-idx": "--train_labels",
    "benchmark": "--no_ceiling", "evaluate": "--fgsm_epsilons",
}


def test_top_level_help_lists_every_command(capsys):
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert set(cli.COMMANDS) == set(EXPECTED_COMMANDS)
    for name in EXPECTED_COMMANDS:
        assert f"  {name} " in text


def test_each_command_documents_its_flags(capsys):
    for name, flag in sorted(EXPECTED_COMMANDS.items()):
        with pytest.raises(SystemExit) as exit_:  # argparse's --help exits 0, as the console script does
            cli.main([name, "--help"])
        assert exit_.value.code == 0, name
        text = capsys.readouterr().out
        assert text.startswith("usage:") and flag in text, name


def test_the_cli_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "noisystudent.app.cli", "select", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:") and "--num_image" in result.stdout


def test_input_errors_are_one_line_not_a_traceback(tmp_path, capsys):
    code = cli.main(["ingest-svhn", "--mat_dir", str(tmp_path), "--output_dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1 and "train_32x32.mat does not exist" in err and "Traceback" not in err


def test_beam_job_runs_as_a_module_with_beam_flags(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "beam_pipelines.ingest_digits", "--output_dir", str(tmp_path),
         "--runner=DirectRunner", "--direct_num_workers=1"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    # The defaults: 10 labels per class, 500 test images, the rest of the 1,797 unlabeled.
    assert {split: entry["records"] for split, entry in summary["splits"].items()} == {
        "labeled": 100, "test": 500, "unlabeled": 1197}
    assert summary["accounting"]["unlabeled"] == {"input": 1197, "written": 1197, "dead_letter": 0}


def test_the_local_runner_mode_that_loses_records_is_refused(tmp_path, capsys):
    code = cli.main(["ingest-digits", "--output_dir", str(tmp_path / "o"),
                     "--direct_num_workers=2", "--direct_running_mode=multi_threading"])
    err = capsys.readouterr().err
    assert code == 1 and "multi_threading" in err and "loses" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_a_lost_record_is_an_error_line_and_exit_1(tmp_path, capsys, monkeypatch):
    from beam_pipelines import dataset_output

    monkeypatch.setattr(dataset_output, "check_accounting", _always_unbalanced)
    code = cli.main(["ingest-digits", "--output_dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1 and "record accounting failed" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "summary.json").exists()


def _always_unbalanced(output_dir, summary, inputs, **_):
    from noisystudent.errors import RecordAccountingError

    raise RecordAccountingError(f"{output_dir}: record accounting failed, summary.json not written: "
                                "split 'unlabeled': 1197 records in, 1196 written, 0 dead letter")


@pytest.mark.parametrize("argv, message", [
    (["report", "NOPE"], "NOPE has no manifest.json"),
    (["ingest-idx", "--train_images", "NOPE", "--train_labels", "L", "--test_images", "T", "--test_labels", "T",
      "--output_dir", "OUT"], "--train_images NOPE: cannot read an IDX header"),
    (["demo", "--seeds", ""], "--seeds '': give at least one seed"),
    (["demo", "--seeds", "0,x"], "--seeds '0,x': expected comma-separated integers"),
    (["demo", "--seeds", "1,1"], "a seed is repeated"),
    (["predict", "--input", "IN/*.tfrecord", "--model", "M.keras", "--output_dir", "OUT", "--batch_size", "0"],
     "--batch_size must be >= 1"),
    (["predict", "--input", "IN/*.tfrecord", "--model", "M.keras", "--output_dir", "OUT", "--precision", "x"],
     "--precision must be one of float32, bfloat16"),
    (["select", "--predictions", "IN", "--output_dir", "OUT", "--num_image", "0"], "--num_image must be >= 1"),
    (["select", "--predictions", "IN", "--output_dir", "OUT", "--num_image", "5", "--min_threshold", "1.5"],
     "--min_threshold must be in [0, 1]"),
    (["select", "--predictions", "IN/*.tfrecord", "--output_dir", "OUT", "--num_image", "5"], "no files match"),
    (["train", "--preset", "digits", "--labeled_data", "IN", "--precision", "float8"], "'precision'"),
    (["ingest-folder", "--unlabeled_dir", "IN", "--output_dir", "OUT"], "is not a folder"),
])
def test_each_commands_bad_input_is_one_line_exit_1_and_writes_nothing(argv, message, tmp_path, capsys):
    argv = [a.replace("IN", str(tmp_path / "in")).replace("OUT", str(tmp_path / "out")) for a in argv]
    code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 1 and message in err and "Traceback" not in err, err
    assert len(err.splitlines()) == 1 and err.startswith(f"noisystudent {argv[0]}: error:")
    assert not (tmp_path / "out").exists()
