"""Job configs and their flags come from one dataclass: defaults, types, required flags, overrides."""

import argparse

import pytest

from beam_pipelines.select import SelectConfig, build_parser
from noisystudent.typed_flags import override, parse


def test_flags_are_generated_from_the_config_with_its_defaults_and_types():
    config, beam_args = parse(SelectConfig, build_parser(), [
        "--predictions", "P", "--output_dir", "O", "--num_image", "7", "--no_upsample", "--runner=X"])
    assert config == SelectConfig(predictions="P", output_dir="O", num_image=7, no_upsample=True)
    assert config.min_threshold == 0.3 and isinstance(config.num_image, int)
    assert beam_args == ["--runner=X"]  # flags the job does not own go to Beam
    with pytest.raises(SystemExit):
        parse(SelectConfig, build_parser(), ["--predictions", "P", "--output_dir", "O"])  # --num_image required
    assert "(default 0.3)" in build_parser().format_help()


def test_override_applies_a_users_extra_flags_and_refuses_unknown_ones():
    base = SelectConfig(predictions="P", output_dir="O", num_image=7)
    assert override(base, ["--min_threshold", "0.5", "--stats_only"]) == SelectConfig(
        predictions="P", output_dir="O", num_image=7, min_threshold=0.5, stats_only=True)
    assert override(base, []) is base
    with pytest.raises(ValueError, match="unknown flag.*--nope"):
        override(base, ["--nope", "1"], "--select_args")
    with pytest.raises((SystemExit, argparse.ArgumentError)):
        override(base, ["--num_image", "many"])
