"""The one skeleton every Beam job runs: prepare the output, grow the graph, run, prove, summarise.

A job describes itself as a `JobPlan` (its output, its graph, how it accounts and describes
what it wrote); `run_job` does the rest in the same order for all of them:

    check_output_apart (never write where the inputs are) -> prepare_output_dir
    -> build(pipeline) -> run (or dry-run: describe and stop)
    -> summarize_reports -> finish(summary, result): check_accounting + the job's fields
    -> write summary.json (last: a directory without it is incomplete)

Ctrl-C during the run raises JobInterrupted (one line at the CLI): Beam's temp folders are
removed, and no summary.json is written, so the output reads as incomplete and the next run
starts clean.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import signal
import sys
import threading
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import apache_beam as beam

from beam_pipelines import dataset_output as out
from beam_pipelines.pipeline_options import is_dry_run, make_pipeline_options, normalise_beam_args, run_pipeline
from noisystudent import dataset_dir
from noisystudent.errors import JobInterrupted

log = logging.getLogger(__name__)


@dataclasses.dataclass
class JobPlan:
    output_dir: str
    num_shards: Mapping[str, int]  # split -> shards the job writes (prepared, then summarised)
    overwrite: bool
    build: Callable[[beam.Pipeline], None]  # the job's graph, reports and dead letters included
    finish: Callable[[dict, Any], dict]  # (summary of the reports, PipelineResult) -> summary.json
    summarized_splits: Optional[Sequence[str]] = None  # default: num_shards' splits
    other_outputs: Sequence[str] = ()  # globs of the job's other files, removed with the stale shards
    inputs: Mapping[str, Sequence[str]] = dataclasses.field(default_factory=dict)  # flag -> paths it reads


def run_job(plan: JobPlan, beam_args: Sequence[str], save_main_session: bool = True,
            test_pipeline: Optional[beam.Pipeline] = None):
    """Run the plan; returns the summary written (or, in a dry run, the job's description)."""
    beam_args = normalise_beam_args(beam_args)
    dry_run = is_dry_run(beam_args)
    out.check_output_apart(plan.output_dir, plan.inputs)
    if not dry_run:
        out.prepare_output_dir(plan.output_dir, plan.num_shards, plan.overwrite, plan.other_outputs)
    pipeline = test_pipeline or beam.Pipeline(options=make_pipeline_options(beam_args, save_main_session))
    plan.build(pipeline)
    if dry_run:
        return run_pipeline(pipeline, dry_run)
    interrupted = JobInterrupted(f"interrupted: {plan.output_dir} is left incomplete (no {dataset_dir.SUMMARY_FILE}); "
                                 "run the same command again to start it clean")
    try:
        with interrupts_as(interrupted):
            result = run_pipeline(pipeline, dry_run)
    except BaseException:
        out.remove_beam_temp_dirs(plan.output_dir)
        shutil.rmtree(pipeline.local_tempdir, ignore_errors=True)
        raise
    splits = plan.num_shards if plan.summarized_splits is None else plan.summarized_splits
    summary = plan.finish(out.summarize_reports(plan.output_dir, splits), result)
    dataset_dir.write_summary(plan.output_dir, summary)
    log.info("%s written to %s: %s", summary.get("job") or summary.get("dataset") or "records", plan.output_dir,
             {split: entry["records"] for split, entry in summary.get("splits", {}).items()})
    return summary


@contextlib.contextmanager
def interrupts_as(error: BaseException) -> Iterator[None]:
    """Inside, Ctrl-C raises `error` instead of whatever Beam makes of a KeyboardInterrupt (it wraps
    one raised inside a DoFn into a RuntimeError): SIGINT is noted, then the usual interrupt runs. A
    KeyboardInterrupt that Python swallows (raised inside a gc callback or a __del__: "Exception ignored")
    still ends the block with `error`, without that traceback."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    interrupted = []
    previous = signal.getsignal(signal.SIGINT)
    beam_log = logging.getLogger("apache_beam")
    level = beam_log.level

    def on_sigint(signum, frame):
        interrupted.append(signum)
        beam_log.setLevel(logging.CRITICAL)  # Beam logs a traceback for every step the interrupt unwinds
        signal.default_int_handler(signum, frame)

    previous_unraisable = sys.unraisablehook

    def on_unraisable(unraisable):
        if not (interrupted and issubclass(unraisable.exc_type, KeyboardInterrupt)):
            previous_unraisable(unraisable)

    signal.signal(signal.SIGINT, on_sigint)
    sys.unraisablehook = on_unraisable
    try:
        yield
    except BaseException:
        if interrupted:
            raise error from None
        raise
    else:
        if interrupted:  # the interrupt was swallowed where it landed: the block ran on to its end
            raise error
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = previous_unraisable
        beam_log.setLevel(level)
