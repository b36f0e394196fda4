"""Beam flag handling shared by every job (see apache_beam/examples/inference).

Every job runs locally by default and on Dataflow with the standard flags:

    --runner=DataflowRunner --project=P --region=R --temp_location=gs://B/tmp
    --setup_file=./setup.py  (or --sdk_container_image=..., deploy/Dockerfile.dataflow)

`--dry-run` (or Beam's own `--dry_run=True`) builds the job and prints its
stages and resolved options without reading inputs, writing outputs or
contacting Google Cloud; with DataflowRunner it also builds the Dataflow job
request (Beam's dry run), which validates the Dataflow options.
"""

from __future__ import annotations

import argparse
import json
import shutil
from typing import Optional, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    SetupOptions,
    StandardOptions,
    TestOptions,
)

# Without --runner, Beam >= 2.6x tries to download Prism first, which stalls
# offline; FnApiRunner is the batch engine DirectRunner falls back to.
DEFAULT_RUNNER = "FnApiRunner"
# One bundle at a time, in this process: the only local mode whose counts were
# proven at tens of thousands of records (docs/design.md, "Local runner").
DEFAULT_LOCAL_PARALLELISM = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]
# Beam 2.77's multi_threading mode runs an embedded gRPC worker whose output
# streams are flushed every second by a timer thread, unsynchronised with the
# thread writing elements: bytes written between the flush's get() and clear()
# are dropped, and a flush mid-element splits it across two chunks, which the
# runner's GroupByKey buffer decodes one chunk at a time ("Invalid
# PaneInfoEncoding"). 59,000 images in, 58,958-58,999 written, no error.
UNSAFE_RUNNING_MODES = {"multi_threading": (
    "Beam's multi_threading local mode loses and corrupts records at real sizes (a timer thread "
    "flushes its gRPC output streams mid-element; docs/design.md, 'Local runner'); use the default "
    "(in_memory) or --direct_running_mode=multi_processing")}
_TRUE = ("1", "true", "yes", "on")


def split_job_and_beam_args(
    parser: argparse.ArgumentParser, argv: Optional[Sequence[str]]
) -> tuple[argparse.Namespace, list[str]]:
    """Parse the job's own flags; everything unknown goes to Beam (with --dry-run normalised)."""
    args, beam_args = parser.parse_known_args(argv)
    return args, normalise_beam_args(beam_args)


def normalise_beam_args(beam_args: Sequence[str]) -> list[str]:
    """--dry-run spelled as Beam reads it; unsafe local modes refused before a job touches its output."""
    normalised = []
    for a in beam_args:
        if a in ("--dry-run", "--dry_run"):
            a = "--dry_run=True"
        elif a.startswith("--dry-run="):
            a = "--dry_run=" + a.split("=", 1)[1]
        normalised.append(a)
    check_local_mode(PipelineOptions(normalised))
    return normalised


def check_local_mode(options: PipelineOptions) -> None:
    """Refuse local running modes that lose records, or that would silently not do what they say."""
    direct = options.view_as(DirectOptions)
    if direct.direct_running_mode in UNSAFE_RUNNING_MODES:
        raise ValueError(f"--direct_running_mode={direct.direct_running_mode}: "
                         f"{UNSAFE_RUNNING_MODES[direct.direct_running_mode]}")
    if direct.direct_running_mode == "in_memory" and direct.direct_num_workers not in (None, 1):
        # Beam would warn and run one worker anyway; say so instead of pretending.
        raise ValueError(f"--direct_num_workers={direct.direct_num_workers} needs "
                         "--direct_running_mode=multi_processing (in_memory runs one worker)")


def is_dry_run(beam_args: Sequence[str]) -> bool:
    """Beam's --dry_run takes any string, so "--dry_run=False" would be truthy: parse it properly."""
    value = PipelineOptions(list(beam_args)).view_as(TestOptions).dry_run
    return str(value).strip().lower() in _TRUE


def make_pipeline_options(beam_args: list[str], save_main_session: bool = True) -> PipelineOptions:
    """PipelineOptions from the leftover flags, defaulting to the local batch runner."""
    args = [a for a in beam_args if not a.startswith("--dry_run=")]
    if is_dry_run(beam_args):
        args.append("--dry_run=True")
    if not any(a == "--runner" or a.startswith("--runner=") for a in args):
        args.append(f"--runner={DEFAULT_RUNNER}")
        if not any(a.startswith(("--direct_num_workers", "--direct_running_mode")) for a in args):
            args += DEFAULT_LOCAL_PARALLELISM
    options = PipelineOptions(args)
    check_local_mode(options)
    options.view_as(SetupOptions).save_main_session = save_main_session
    return options


def run_pipeline(pipeline: beam.Pipeline, dry_run: bool):
    """Run to completion and return the PipelineResult; in a dry run, build (and for
    Dataflow, validate) the job and return its description instead."""
    if not dry_run:
        result = pipeline.run()
        result.wait_until_finish()
        return result
    runner = pipeline.options.view_as(StandardOptions).runner or ""
    description = describe_pipeline(pipeline)
    if "Dataflow" in str(runner):
        result = pipeline.run()  # Beam's dry run: builds the job request, submits nothing
        job = getattr(result, "job", None)
        if job is not None:
            description["dataflow_job"] = {"name": job.proto.name, "steps": len(job.proto.steps) or None,
                                           "transforms": len(job.proto_pipeline.components.transforms)}
    else:  # never run: Beam removes the pipeline's local temp dir only in run()
        shutil.rmtree(pipeline.local_tempdir, ignore_errors=True)
    print(json.dumps(description, indent=2, default=str))
    return description


def counter_value(result, namespace: str, name: str) -> Optional[int]:
    """A Beam counter's committed value (attempted where the runner commits none)."""
    from apache_beam.metrics.metric import MetricsFilter

    found = result.metrics().query(MetricsFilter().with_namespace(namespace).with_name(name))["counters"]
    if not found:
        return None
    values = [c.committed if c.committed is not None else c.attempted for c in found]
    return int(sum(values))


def describe_pipeline(pipeline: beam.Pipeline) -> dict:
    """Stage names (top level and one below) and the options as given."""
    proto = pipeline.to_runner_api()
    transforms = proto.components.transforms
    stages = []
    for root in proto.root_transform_ids:
        for child in transforms[root].subtransforms:
            stages.append(transforms[child].unique_name)
            stages += [transforms[g].unique_name for g in transforms[child].subtransforms]
    return {"runner": str(pipeline.options.view_as(StandardOptions).runner),
            "options": pipeline.options.get_all_options(drop_default=True),
            "stages": stages}


def beam_flags_epilog() -> str:
    return (
        "Standard Beam flags pass through unchanged, e.g. --runner=DataflowRunner "
        "--project=P --region=R --temp_location=gs://B/tmp --setup_file=./setup.py "
        "--num_workers=N. Default runner: FnApiRunner (the batch engine behind DirectRunner, "
        "without its Prism download attempt), one bundle at a time in this process; "
        "--direct_num_workers=2 --direct_running_mode=multi_processing runs two worker "
        "processes (multi_threading is refused: it loses records). --dry-run builds the job and "
        "prints its stages and options without touching data or the cloud."
    )
