"""Job configs and their flags come from one dataclass: defaults, types, required flags, overrides."""

import argparse

import pytest

from beam_pipelines.select import SelectConfig, build_parser
from noisystudent.typed_flags import given, parse


def test_flags_are_generated_from_the_config_with_its_defaults_and_types():
    config, beam_args = parse(SelectConfig, build_parser(), [
        "--predictions", "P", "--output_dir", "O", "--num_image", "7", "--no_upsample", "--runner=X"])
    assert config == SelectConfig(predictions="P", output_dir="O", num_image=7, no_upsample=True)
    assert config.min_threshold == 0.3 and isinstance(config.num_image, int)
    assert beam_args == ["--runner=X"]  # flags the job does not own go to Beam
    with pytest.raises(SystemExit):
        parse(SelectConfig, build_parser(), ["--predictions", "P", "--output_dir", "O"])  # --num_image required
    assert "(default 0.3)" in build_parser().format_help()


def test_given_types_only_the_flags_a_user_set_and_refuses_unknown_ones():
    assert given(SelectConfig, ["--min_threshold", "0.5", "--stats_only"]) == {"min_threshold": 0.5,
                                                                                "stats_only": True}
    assert given(SelectConfig, []) == {}
    with pytest.raises(ValueError, match="unknown flag.*--nope"):
        given(SelectConfig, ["--nope", "1"], "--select_args")
    with pytest.raises((SystemExit, argparse.ArgumentError)):
        given(SelectConfig, ["--num_image", "many"])


def test_a_boolean_flag_is_a_switch_that_also_takes_a_value_for_every_job_and_the_trainer():
    """One generator: `--stats_only` alone is true; `--saved_model false` turns off a field that defaults on."""
    from trainer.config import config_from_args

    assert given(SelectConfig, ["--stats_only"]) == {"stats_only": True}
    assert given(SelectConfig, ["--stats_only", "false", "--max_prob", "1"]) == {"stats_only": False, "max_prob": 1.0}
    config = config_from_args(["--preset", "digits", "--labeled_data", "d", "--saved_model", "false",
                               "--allow_smaller_student", "--randaugment_cutout_op", "no"])
    assert (config.saved_model, config.allow_smaller_student, config.randaugment_cutout_op) == (False, True, False)
    assert config.train_steps == 400 and config.batch_size == 32  # the preset's, where no flag is given
    with pytest.raises(SystemExit):
        config_from_args(["--saved_model", "maybe"])
