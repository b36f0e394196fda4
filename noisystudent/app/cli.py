"""`noisystudent`: one subcommand per job; `noisystudent <command> --help` for its flags."""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
from typing import Optional, Sequence

from beam_pipelines import JOBS
from noisystudent.errors import JOB_ERRORS, JobInterrupted, op_message

# name -> (module with run(argv), one-line description); the Beam jobs are beam_pipelines.JOBS.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("noisystudent.app.demo", "The whole method on the bundled digits data, offline."),
    "loop": ("noisystudent.app.loop", "teacher -> predict -> select -> student, iterated, resumable."),
    "benchmark": ("noisystudent.app.benchmark", "The method over seeds vs the supervised ceiling: JSON + markdown."),
    "report": ("noisystudent.app.report", "One self-contained report.html for a loop run."),
    **JOBS,
    "train": ("trainer.task", "Keras: train a teacher or a noisy student (also python -m trainer.task)."),
    "classify": ("noisystudent.app.classify", "Top-k classes for your images with a trained model."),
    "features": ("noisystudent.app.features", "Pooled embeddings for your images (.npy or TFRecords)."),
    "dataflow": ("deploy.dataflow", "Run a Beam job on Dataflow (or --dry-run it)."),
    "submit-training": ("deploy.vertex", "Submit the trainer to Vertex AI, TPU/GPU/CPU (or --dry-run it)."),
}


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: noisystudent <command> [flags]   (noisystudent <command> --help)", "",
             "Noisy Student training on Apache Beam and Keras.", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def configure_logging() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in ("apache_beam", "absl", "tensorflow", "h5py", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _QuietJobErrors) for f in handler.filters):
            handler.addFilter(_QuietJobErrors())


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"noisystudent: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    configure_logging()
    module = importlib.import_module(COMMANDS[name][0])
    import tensorflow as tf

    try:
        module.run(rest)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError, tf.errors.OpError, RuntimeError) as e:
        # Input errors, unreadable files (TensorFlow's NotFound, PermissionDenied, DataLoss ...), lost
        # records and failed steps: one clear line. NOISYSTUDENT_TRACEBACK=1 shows the traceback.
        if os.environ.get("NOISYSTUDENT_TRACEBACK"):
            raise
        print(f"noisystudent {name}: error: {error_line(e)}", file=sys.stderr)
        return 130 if isinstance(e, JobInterrupted) else 1
    except KeyboardInterrupt:
        if os.environ.get("NOISYSTUDENT_TRACEBACK"):
            raise
        print(f"noisystudent {name}: interrupted (Ctrl-C): what it was writing is left incomplete", file=sys.stderr)
        return 130
    return 0


def error_line(e: BaseException) -> str:
    """One line that says what failed: a TensorFlow op's own message (not "Graph execution error:")."""
    import tensorflow as tf

    message = op_message(e.message) if isinstance(e, tf.errors.OpError) else str(e)
    lines = [line for line in message.strip().splitlines() if line.strip()]
    # Beam appends the step an exception was raised in: the message already says what and where.
    return re.sub(r" \[while running '[^']*'\]$", "", lines[0].strip()) if lines else repr(e)


class _QuietJobErrors(logging.Filter):
    """Beam logs an exception raised inside a DoFn with its traceback before re-raising it; ours (a
    refused damaged input, a refused selection) reach the user as one line, so their log is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], JOB_ERRORS))


if __name__ == "__main__":
    sys.exit(main())
