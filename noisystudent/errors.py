"""The errors a job raises on purpose: each means "refused or stopped, nothing complete written".

The CLI turns every one of them into one line and exit 1 (130 for an interrupt), and silences the
traceback Beam logs when one is raised inside a pipeline (a DoFn that refuses damaged input).
"""

from __future__ import annotations

import re


class RecordAccountingError(RuntimeError):
    """A job's output does not account for its input (records lost or invented): no summary.json."""


class DamagedInputError(ValueError):
    """An input file holds fewer (or more) records than its dataset declares, or is unreadable mid-way."""


class OutputIsInputError(ValueError):
    """An output directory equal to, inside or containing one of the job's inputs."""


class SelectionRefused(ValueError):
    """A selection whose output would be unreasonably large for what it keeps (runaway copies)."""


class JobInterrupted(RuntimeError):
    """Ctrl-C (SIGINT) during a job: its output is left incomplete, without summary.json."""


JOB_ERRORS = (RecordAccountingError, DamagedInputError, OutputIsInputError, SelectionRefused, JobInterrupted)


_OP_NOISE = re.compile(r"^(Graph execution error:|Detected at node .*|<stack traces unavailable>|\s+File .*|"
                       r"\s*\[\[.*\]\].*)$")


def op_message(message: str) -> str:
    """The failing op's message out of TensorFlow's error text (node names, stack frames and the
    tf.data wrapper prefixes removed)."""
    for line in message.splitlines():
        if not line.strip() or _OP_NOISE.match(line) or line.startswith("  "):
            continue
        line = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", line.strip())
        line = re.sub(r"^Error in user-defined function passed to .*? transformation with iterator: "
                      r"[\w:]+: ", "", line)
        return re.sub(r"\s*\[Op:[^\]]*\].*$", "", line).strip()
    return message.strip()
