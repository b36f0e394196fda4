"""Beam flag handling shared by every job (see apache_beam/examples/inference)."""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions

# Without --runner Beam tries to download Prism; offline that stalls before it
# falls back. Local runs are what a user means when they name no runner.
DEFAULT_RUNNER = "FnApiRunner"


def split_job_and_beam_args(
    parser: argparse.ArgumentParser, argv: Optional[Sequence[str]]
) -> tuple[argparse.Namespace, list[str]]:
    """Parse the job's own flags; everything unknown goes to Beam."""
    return parser.parse_known_args(argv)


def make_pipeline_options(beam_args: list[str], save_main_session: bool = True) -> PipelineOptions:
    """PipelineOptions from the leftover flags, defaulting to DirectRunner."""
    args = list(beam_args)
    if not any(a == "--runner" or a.startswith("--runner=") for a in args):
        args.append(f"--runner={DEFAULT_RUNNER}")
    options = PipelineOptions(args)
    options.view_as(SetupOptions).save_main_session = save_main_session
    return options


def beam_flags_epilog() -> str:
    return (
        "Standard Beam flags pass through unchanged, e.g. --runner=DataflowRunner "
        "--project=P --region=R --temp_location=gs://B/tmp --setup_file=./setup.py "
        "--num_workers=N; locally --direct_num_workers=2 "
        "--direct_running_mode=multi_processing. Default runner: FnApiRunner (the batch engine behind DirectRunner, without its Prism download attempt)."
    )
