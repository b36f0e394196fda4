"""The whole method, iterated: teacher -> predict -> select -> student -> evaluate -> repeat.

    noisystudent loop --data runs/digits/data --models cnn-small,cnn-small,cnn-small \\
        --preset digits --num_image 120 --run_dir runs/loop

Every step writes into its own folder under --run_dir, and manifest.json records
the config, inputs, which teacher produced which labels, metrics and timings.
Run the same command again after a crash: finished steps (their completion
marker exists and the manifest says done) are skipped, the rest run. A run dir
written under other settings is refused (its students would be reused as if
trained under the new ones); adding models to --models adds iterations.

    <run_dir>/manifest.json
    <run_dir>/iter0/teacher/                 supervised teacher (model.keras, eval.json)
    <run_dir>/iter1/predictions/             teacher's labels on the unlabeled split
    <run_dir>/iter1/pseudo/                  selected, balanced pseudo-labeled records
    <run_dir>/iter1/student/                 noised student; it labels iteration 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import posixpath
import shlex
import time
from typing import Any, Callable, Optional, Sequence

import tensorflow as tf

from noisystudent import dataset_dir, run_layout
from noisystudent.app import experiment as experiment_lib
from noisystudent.app.experiment import Experiment
from trainer.config import DEFAULT_PRESET

log = logging.getLogger(__name__)
MANIFEST = run_layout.MANIFEST


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """One seed of an experiment (noisystudent/app/experiment.py), run in one directory."""

    experiment: Experiment
    run_dir: str
    seed: int = 0
    beam_args: tuple[str, ...] = ()  # Beam flags for predict and select (e.g. --runner=...)

    def data(self) -> str:
        return self.experiment.data.replace("{seed}", str(self.seed)).replace("{run_dir}", self.run_dir)

    def manifest_config(self) -> dict:
        """What manifest.json records (and a resume compares): the resolved experiment for this seed."""
        return _for_seed(experiment_lib.resolved(self.experiment), self.run_dir, self.seed, self.data(),
                         list(self.beam_args))


def _for_seed(resolved: dict, run_dir: str, seed: int, data: str, beam_args: list) -> dict:
    return {"run_dir": run_dir, "seed": seed, "beam_args": beam_args,
            **{k: v for k, v in resolved.items() if k not in BENCHMARK_ONLY}, "data": data}


BENCHMARK_ONLY = ("seeds", "title", "ceiling", "robustness", "evaluate")  # fields one seed's loop does not use
NOT_COMPARED = ("run_dir", "beam_args", "models")  # another spelling, another runner; models: see below


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="noisystudent loop", description=__doc__.split("\n\n")[0],
                                     epilog="Every flag but --run_dir and --beam_args is shorthand for a field of "
                                            "the experiment (noisystudent/app/experiment.py); --config.FIELD "
                                            "VALUE sets any field.")
    experiment_lib.add_flags(parser, benchmark=False)
    parser.add_argument("--run_dir", help="Where every step writes; re-run to resume.")
    parser.add_argument("--beam_args", default="", help="Beam flags for predict/select, e.g. '--runner=...'.")
    return parser


class Manifest:
    """manifest.json: what ran, on what, with which result; rewritten after every step."""

    def __init__(self, run_dir: str, config: dict):
        self.path = posixpath.join(run_dir, MANIFEST)
        self.data = {"config": config, "steps": {}}
        if tf.io.gfile.exists(self.path):
            previous = dataset_dir.read_json(self.path)
            check_same_run(_from_older_manifest(previous.get("config", {})), config, self.path)
            self.data["steps"] = previous.get("steps", {})
        tf.io.gfile.makedirs(run_dir)
        self.save()

    def done(self, name: str) -> bool:
        return self.data["steps"].get(name, {}).get("status") == "done"

    def record(self, name: str, **entry) -> None:
        self.data["steps"][name] = {**self.data["steps"].get(name, {}), **entry}
        self.save()

    def save(self) -> None:
        with tf.io.gfile.GFile(self.path, "w") as f:
            json.dump(self.data, f, indent=2)


def check_same_run(previous: dict, config: dict, path: str) -> None:
    """Resume only the run that wrote `path`: a step finished under other settings would be reused silently.

    Allowed: another --run_dir spelling, other Beam flags, and --models extending (or cutting) the old list,
    which adds (or stops before) iterations without changing the finished ones. A field the old record lacks
    (added to the project since) counts only when its value is not the default.
    """
    config = json.loads(json.dumps(config))  # tuples as the manifest stores them
    defaults = _for_seed(experiment_lib.resolved(Experiment(data="", preset=config.get("preset", DEFAULT_PRESET))),
                         "", 0, "", [])
    changed = [d for k in sorted(set(previous) | set(config)) if k not in NOT_COMPARED
               for d in _differences(k, previous.get(k, _ABSENT), config.get(k, _ABSENT), defaults.get(k, _ABSENT))]
    text = [f"{name}: {_shown(old)} -> {_shown(new)}" for name, old, new in changed]
    old, new = previous.get("models", []), config.get("models", [])
    models_differ = old[:len(new)] != new[:len(old)]
    if models_differ:
        text.append(f"models: {old!r} -> {new!r} (only adding or dropping iterations at the end resumes)")
    if text:
        as_ran = "" if models_differ else _as_ran_flags(changed)
        raise ValueError(f"{path} records a run with other settings ({'; '.join(text)}): its finished steps "
                         "would be reused under the new ones. Use a new --run_dir"
                         + (f", resume it as it ran ({as_ran})" if as_ran else "")
                         + ", or delete the old one to start over.")


def _as_ran_flags(changed: list[tuple[str, Any, Any]]) -> str:
    """The --config flags that give a stage's changed fields their recorded values back (a default that moved
    since, e.g. the loop's select.min_threshold 0.3 -> 0.7: `--config.select.min_threshold 0.3`); '' when a
    change is not such a field (or its old value has no spelling: absent, None)."""
    flags = []
    for name, old, _ in changed:
        if name.partition(".")[0] not in experiment_lib.STAGES or "." not in name or old in (_ABSENT, None):
            return ""
        flags.append(f"--config.{name} {shlex.quote(experiment_lib.flag_spelling(old))}")
    return " ".join(flags)


def _from_older_manifest(recorded: dict) -> dict:
    """A manifest written before the loop took an experiment whole (its config: LoopConfig's flat fields and,
    from --config, the resolved experiment under "experiment") in today's form, so that run resumes."""
    if "train" in recorded or not recorded.get("experiment"):
        return recorded
    return _for_seed(recorded["experiment"], recorded.get("run_dir", ""), recorded.get("seed", 0),
                     recorded.get("data", ""), recorded.get("beam_args", []))


_ABSENT = object()


def _differences(name: str, old, new, default=_ABSENT) -> list[tuple[str, Any, Any]]:
    """(dotted name, old, new) for each value that differs; for dicts (an experiment's sections) only the
    dotted keys that differ. A field the old record lacks (added to the project since) differs only when not
    at its default."""
    if old is _ABSENT and new == default:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        default = default if isinstance(default, dict) else {}
        return [d for k in sorted(set(old) | set(new))
                for d in _differences(f"{name}.{k}", old.get(k, _ABSENT), new.get(k, _ABSENT), default.get(k, _ABSENT))]
    return [] if old == new else [(name, old, new)]


def _shown(value) -> str:
    return "(absent)" if value is _ABSENT else repr(value)


def _step(manifest: Manifest, name: str, marker: str, fn: Callable[[], dict], **info) -> dict:
    """Run fn unless the step is done and its output marker exists; record time and result."""
    if manifest.done(name) and tf.io.gfile.exists(marker):
        log.info("step %s: done already, skipped", name)
        return manifest.data["steps"][name].get("result", {})
    log.info("step %s: running", name)
    manifest.record(name, status="running", started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **info)
    start = time.time()
    try:
        result = fn()
    except Exception as e:
        manifest.record(name, status="failed", error=f"{type(e).__name__}: {e}")
        raise
    manifest.record(name, status="done", seconds=round(time.time() - start, 1), result=result)
    return result


def _eval_summary(report: dict) -> dict:
    return {k: report[k] for k in ("top1_accuracy", "top5_accuracy", "num_examples") if k in report}


def run_loop(cfg: LoopConfig) -> list[dict]:
    """Run (or resume) the loop; returns one table row per model trained. Every step is called
    through its typed entry: trainer.task.train(TrainConfig), predict/select.run_config(...)."""
    import keras

    from beam_pipelines import predict, select
    from trainer import config as train_config
    from trainer import task

    exp, data = cfg.experiment, cfg.data()
    eval_split = exp.eval_split or train_config.get_config(exp.preset).eval_split
    summary = dataset_dir.load_summary(data)
    for field, split in (("labeled_split", exp.labeled_split), ("unlabeled_split", exp.unlabeled_split),
                         ("eval_split", eval_split)):
        if split not in summary.splits:
            where = "" if split != eval_split or exp.eval_split else f", the {exp.preset} preset's eval split"
            raise ValueError(f"--data {data} has no split {split!r}{where} (it has {', '.join(summary.splits)}); "
                             f"pass --{field}")
    if not summary.num_classes:
        raise ValueError(f"--data {data}: its {dataset_dir.SUMMARY_FILE} names no num_classes")
    select_fields = {**experiment_lib.LOOP_SELECT_DEFAULTS, **exp.select}
    num_image = select_fields.pop("num_image", 0) or max(
        1, summary.split(exp.unlabeled_split).records // summary.num_classes)
    manifest = Manifest(cfg.run_dir, cfg.manifest_config())
    base = train_config.recipe(exp.preset, exp.train, labeled_data=data, labeled_split=exp.labeled_split,
                               eval_split=eval_split, seed=cfg.seed)
    dataclasses.replace(base, **exp.student).validate()  # the students' recipe, refused before any step
    rows = []

    def train(name: str, out: str, **fields) -> dict:
        def fn():
            keras.backend.clear_session()
            return _eval_summary(task.train(dataclasses.replace(base, output_dir=out, **fields)))
        return _step(manifest, name, posixpath.join(out, run_layout.EVAL_FILE), fn, output=out)

    teacher_dir = run_layout.step_dir(cfg.run_dir, 0, run_layout.TEACHER)
    result = train(run_layout.step_name(0, run_layout.TEACHER), teacher_dir, model=exp.models[0], mode="supervised")
    labeled = summary.split(exp.labeled_split).records
    rows.append({"iteration": 0, "model": exp.models[0], "role": "teacher (labeled only)",
                 "labeled": labeled, "pseudo_labeled": 0, **result})
    for i, student in enumerate(exp.models[1:], start=1):
        teacher_model = posixpath.join(teacher_dir, run_layout.MODEL_FILE)
        preds, pseudo, student_dir = (run_layout.step_dir(cfg.run_dir, i, d)
                                      for d in (run_layout.PREDICTIONS, run_layout.PSEUDO, run_layout.STUDENT))
        predict_config = predict_step_config(cfg, base, teacher_model, preds, f"{run_layout.iteration(i - 1)}:{exp.models[i - 1]}")
        _step(manifest, run_layout.step_name(i, run_layout.PREDICT_STEP), posixpath.join(preds, dataset_dir.SUMMARY_FILE),
              lambda: _beam_result(predict.run_config(predict_config, cfg.beam_args)), teacher=teacher_model)
        select_config = select.SelectConfig(predictions=preds, output_dir=pseudo, num_image=num_image, overwrite=True,
                                            seed=cfg.seed, **select_fields)
        selected = _step(manifest, run_layout.step_name(i, run_layout.SELECT_STEP), posixpath.join(pseudo, dataset_dir.SUMMARY_FILE),
                         lambda: _select_result(select.run_config(select_config, cfg.beam_args)),
                         predictions=preds)
        result = train(run_layout.step_name(i, run_layout.STUDENT), student_dir, model=student, mode="offline", unlabeled_data=pseudo,
                       teacher=teacher_model, **exp.student)
        rows.append({"iteration": i, "model": student, "role": f"student of {run_layout.iteration(i - 1)}", "labeled": labeled,
                     "pseudo_labeled": selected.get("written", 0),
                     **{k: selected[k] for k in ("pseudo_label_precision", "per_class_precision") if k in selected},
                     **result})
        teacher_dir = student_dir
    manifest.data["table"] = rows
    manifest.save()
    from noisystudent.app import report

    log.info("report: %s", report.write_report(cfg.run_dir))
    return rows


def predict_step_config(cfg: LoopConfig, recipe, teacher_model: str, output_dir: str, teacher_name: str):
    """The predict step: the teacher labels the unlabeled split with the pixels it was evaluated on (the
    recipe's eval_center_crop: the original's ImageNet crop under the imagenet preset, as its predict.sh),
    then the experiment's predict settings."""
    from beam_pipelines import predict

    return predict.PredictConfig(
        input=cfg.data(), split=cfg.experiment.unlabeled_split, model=teacher_model, output_dir=output_dir,
        teacher_name=teacher_name, overwrite=True, seed=cfg.seed,
        **{"center_crop": recipe.eval_center_crop, **cfg.experiment.predict})


def _beam_result(summary: dict) -> dict:
    keys = ("input_records", "predicted", "dead_letter", "mean_confidence")
    return {k: summary[k] for k in keys if k in summary}


def _select_result(summary: dict) -> dict:
    classes = summary["stats"]["classes"]
    result = {"kept_unique": summary["kept_unique"], "written": summary["written"],
              "per_class_written": {r["name"]: r["written"] for r in classes},
              "thresholds": {r["name"]: r["threshold"] for r in classes}}
    if "pseudo_label_precision" in summary["stats"]:  # the data keeps hidden true labels
        result["pseudo_label_precision"] = summary["stats"]["pseudo_label_precision"]
        result["per_class_precision"] = {r["name"]: r["pseudo_label_precision"] for r in classes}
    return result


def format_table(rows: list[dict]) -> str:
    lines = ["iteration  model         role                      labeled  pseudo-labeled  test top-1",
             "---------  ------------  ------------------------  -------  --------------  -----------"]
    for r in rows:
        lines.append(f"{r['iteration']:>9}  {r['model']:<12}  {r['role']:<24}  {r['labeled']:>7}  "
                     f"{r['pseudo_labeled']:>14}  {r.get('top1_accuracy', float('nan')):>11.4f}")
    return "\n".join(lines)


def run(argv: Optional[Sequence[str]] = None) -> list[dict]:
    import sys

    experiment, args = experiment_lib.parse_flags(build_parser(), list(sys.argv[1:] if argv is None else argv))
    if args.print_config:
        print(json.dumps(experiment_lib.resolved(experiment), indent=2))
        return []
    if not args.run_dir:
        raise ValueError("--run_dir: where the loop's steps write")
    if len(experiment.seeds) > 1:
        log.info("the loop runs seed %d (the experiment's first; --seed picks another); benchmark runs them all",
                 experiment.seeds[0])
    rows = run_loop(LoopConfig(experiment, args.run_dir, experiment.seeds[0], tuple(args.beam_args.split())))
    print(format_table(rows))
    return rows
