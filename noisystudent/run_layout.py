"""Where a run's steps write: the layout of a loop's and a benchmark's run directory, in one place
(the loop writes it; report, benchmark and demo read it).

    <benchmark run_dir>/seed<S>/loop/              a loop run (manifest.json, iter*/)
    <benchmark run_dir>/seed<S>/ceiling/           the supervised ceiling
    <benchmark run_dir>/seed<S>/labeled_only/      the last student's model on the labels alone
    <benchmark run_dir>/seed<S>/ceiling_data/      the ceiling's training data (every label)
    <loop run_dir>/manifest.json
    <loop run_dir>/robustness.json                 every model of the seed, corrupted and FGSM (benchmark)
    <loop run_dir>/iter0/teacher/                  the supervised teacher
    <loop run_dir>/iter<i>/predictions/            its teacher's labels on the unlabeled split
    <loop run_dir>/iter<i>/pseudo/                 the selection (select's stats.json, plots)
    <loop run_dir>/iter<i>/student/                the noised student; it labels iteration i + 1
"""

from __future__ import annotations

import posixpath

MANIFEST = "manifest.json"
MODEL_FILE, EVAL_FILE = "model.keras", "eval.json"  # in a trained model's folder (the trainer writes them)
ROBUSTNESS_FILE = "robustness.json"  # in a loop dir: its models on corrupted and FGSM images (benchmark)
TEACHER, PREDICTIONS, PSEUDO, STUDENT = "teacher", "predictions", "pseudo", "student"
PREDICT_STEP, SELECT_STEP = "predict", "select"  # manifest step names (iter<i>/predict); the others: TEACHER, STUDENT
CEILING, LABELED_ONLY = "ceiling", "labeled_only"  # a benchmark seed's references, beside its loop
CEILING_DATA = "ceiling_data"


def iteration(i: int) -> str:
    """A step's iteration name: iter0 (the teacher), iter1, ... (manifest step names start with it)."""
    return f"iter{i}"


def step_name(i: int, step: str) -> str:
    """A manifest step's name: iter<i>/<step> (teacher, predict, select, student)."""
    return f"{iteration(i)}/{step}"


def step_dir(run_dir: str, i: int, step: str) -> str:
    """<run_dir>/iter<i>/<step>: step one of TEACHER, PREDICTIONS, PSEUDO, STUDENT."""
    return posixpath.join(run_dir, iteration(i), step)


def iteration_step_dir(run_dir: str, iteration_name: str, step: str) -> str:
    """The same, from a manifest step's iteration name ("iter2")."""
    return posixpath.join(run_dir, iteration_name, step)


STEP_FOLDERS = {TEACHER: TEACHER, PREDICT_STEP: PREDICTIONS, SELECT_STEP: PSEUDO, STUDENT: STUDENT}


def manifest_step_dir(run_dir: str, name: str) -> str:
    """The folder a manifest step ("iter1/select") writes: <run_dir>/iter1/pseudo."""
    iteration_name, _, step = name.partition("/")
    if step not in STEP_FOLDERS:
        raise ValueError(f"{name!r}: not a manifest step name (iter<i>/<{'|'.join(STEP_FOLDERS)}>)")
    return iteration_step_dir(run_dir, iteration_name, STEP_FOLDERS[step])


def seed_dir(run_dir: str, seed: int) -> str:
    return posixpath.join(run_dir, f"seed{seed}")


def loop_dir(run_dir: str, seed: int) -> str:
    return posixpath.join(seed_dir(run_dir, seed), "loop")
