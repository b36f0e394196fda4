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
import time
from typing import Callable, Optional, Sequence

import tensorflow as tf

from noisystudent import dataset_dir, run_layout, splits
from trainer.config import DEFAULT_PRESET, PRESETS

log = logging.getLogger(__name__)
MANIFEST = run_layout.MANIFEST


@dataclasses.dataclass
class LoopConfig:
    data: str
    run_dir: str
    models: list[str]
    preset: str = DEFAULT_PRESET
    labeled_split: str = splits.LABELED
    unlabeled_split: str = splits.UNLABELED
    eval_split: str = ""  # "": the preset's (test for digits and svhn, validation for imagenet)
    num_image: int = 0  # per class; 0 = the unlabeled split's size / classes
    min_threshold: Optional[float] = None  # None: select's default
    seed: int = 0
    train_args: tuple[str, ...] = ()  # the user's trainer flags (loop --train_args)
    train_overrides: dict = dataclasses.field(default_factory=dict)  # TrainConfig fields, after train_args
    select_args: tuple[str, ...] = ()
    predict_args: tuple[str, ...] = ()  # predict's flags; the center crop follows the preset's eval_center_crop
    predict_overrides: dict = dataclasses.field(default_factory=dict)  # PredictConfig fields (an experiment's)
    select_overrides: dict = dataclasses.field(default_factory=dict)  # SelectConfig fields (an experiment's)
    experiment: dict = dataclasses.field(default_factory=dict)  # the resolved experiment it came from (manifest)
    beam_args: tuple[str, ...] = ()


EXPERIMENT_FLAGS = ("--data", "--models", "--preset", "--labeled_split", "--unlabeled_split", "--eval_split",
                    "--num_image", "--min_threshold", "--seed", "--train_args", "--select_args", "--predict_args")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="noisystudent loop", description=__doc__.split("\n\n")[0],
                                     epilog="Or one experiment file: --config F (noisystudent/app/experiment.py) with "
                                            "--config.FIELD VALUE overrides and --print_config.")
    parser.add_argument("--config", default="", help="An experiment file, or a shipped one by name (digits_demo, "
                                                      "mnist_benchmark, svhn, imagenet_b7_l2); runs its first seed.")
    parser.add_argument("--print_config", action="store_true", help="Print the resolved experiment as JSON and exit.")
    parser.add_argument("--data", help="Dataset dir with labeled, unlabeled and test splits.")
    parser.add_argument("--run_dir", help="Where every step writes; re-run to resume.")
    parser.add_argument("--models",
                        help="Comma-separated: the teacher, then one student per iteration (equal or larger).")
    parser.add_argument("--preset", default=DEFAULT_PRESET, help=f"Trainer preset ({', '.join(PRESETS)}).")
    parser.add_argument("--labeled_split", default=splits.LABELED)
    parser.add_argument("--unlabeled_split", default=splits.UNLABELED)
    parser.add_argument("--eval_split", default="", help="Split the models are evaluated on (default: the preset's).")
    parser.add_argument("--num_image", type=int, default=0,
                        help="Pseudo-labeled images per class (default: unlabeled images / classes).")
    parser.add_argument("--min_threshold", type=float, default=None,
                        help="Selection's lowest confidence (default: select's --min_threshold).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train_args", default="", help="Extra trainer flags, e.g. '--train_steps 600'.")
    parser.add_argument("--select_args", default="", help="Extra selection flags.")
    parser.add_argument("--predict_args", default="",
                        help="Extra predict flags, e.g. '--precision bfloat16 --prob_format top_k:5' (the center "
                             "crop follows the preset: on with imagenet, as the original's predict.sh).")
    parser.add_argument("--beam_args", default="", help="Beam flags for predict/select, e.g. '--runner=...'.")
    return parser


class Manifest:
    """manifest.json: what ran, on what, with which result; rewritten after every step."""

    def __init__(self, run_dir: str, config: dict):
        self.path = posixpath.join(run_dir, MANIFEST)
        self.data = {"config": config, "steps": {}}
        if tf.io.gfile.exists(self.path):
            previous = dataset_dir.read_json(self.path)
            check_same_run(previous.get("config", {}), config, self.path)
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

    Allowed: another --run_dir spelling, and --models extending (or cutting) the old list, which adds (or stops
    before) iterations without changing the finished ones.
    """
    config = json.loads(json.dumps(config))  # tuples as the manifest stores them
    defaults = json.loads(json.dumps({f.name: f.default for f in dataclasses.fields(LoopConfig)
                                      if f.default is not dataclasses.MISSING}))
    changed = [_difference(k, previous.get(k), config.get(k)) for k in sorted(set(previous) | set(config))
               if k not in ("run_dir", "models") and previous.get(k) != config.get(k)
               and not (k not in previous and config.get(k) == defaults.get(k))]  # a field added since
    old, new = previous.get("models", []), config.get("models", [])
    if old[:len(new)] != new[:len(old)]:
        changed.append(f"models: {old!r} -> {new!r} (only adding or dropping iterations at the end resumes)")
    if changed:
        raise ValueError(f"{path} records a run with other settings ({'; '.join(changed)}): its finished steps "
                         "would be reused under the new ones. Use a new --run_dir, or delete the old one to "
                         "start over.")


def _difference(name: str, old, new) -> str:
    """`name: old -> new`; for dicts (an experiment, its sections) only the dotted keys that differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        return "; ".join(_difference(f"{name}.{k}", old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
                         if old.get(k) != new.get(k))
    return f"{name}: {old!r} -> {new!r}"


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
    from noisystudent.typed_flags import override
    from trainer import config as train_config
    from trainer import task

    if len(cfg.models) < 2:
        raise ValueError("--models needs a teacher and at least one student")
    if cfg.min_threshold is not None and (any(a.split("=")[0] == "--min_threshold" for a in cfg.select_args)
                                          or "min_threshold" in cfg.select_overrides):
        raise ValueError("--min_threshold and --select_args '--min_threshold ...' both set the selection's "
                         "threshold: give it once")
    eval_split = cfg.eval_split or train_config.get_config(cfg.preset).eval_split
    summary = dataset_dir.load_summary(cfg.data)
    for flag, split in (("--labeled_split", cfg.labeled_split), ("--unlabeled_split", cfg.unlabeled_split),
                        ("--eval_split", eval_split)):
        if split not in summary.splits:
            where = "" if split != eval_split or cfg.eval_split else f", the {cfg.preset} preset's eval split"
            raise ValueError(f"--data {cfg.data} has no split {split!r}{where} (it has {', '.join(summary.splits)}); "
                             f"pass {flag}")
    if not summary.num_classes:
        raise ValueError(f"--data {cfg.data}: its summary.json names no num_classes")
    num_image = cfg.num_image or max(1, summary.split(cfg.unlabeled_split).records // summary.num_classes)
    manifest = Manifest(cfg.run_dir, dataclasses.asdict(cfg))
    base = train_config.recipe(cfg.preset, cfg.train_args, cfg.train_overrides, labeled_data=cfg.data,
                               labeled_split=cfg.labeled_split, eval_split=eval_split, seed=cfg.seed)
    select_overrides = {} if cfg.min_threshold is None else {"min_threshold": cfg.min_threshold}
    rows = []

    def train(name: str, out: str, **fields) -> dict:
        def fn():
            keras.backend.clear_session()
            return _eval_summary(task.train(dataclasses.replace(base, output_dir=out, **fields)))
        return _step(manifest, name, posixpath.join(out, "eval.json"), fn, output=out)

    teacher_dir = run_layout.step_dir(cfg.run_dir, 0, run_layout.TEACHER)
    result = train("iter0/teacher", teacher_dir, model=cfg.models[0], mode="supervised")
    labeled = summary.split(cfg.labeled_split).records
    rows.append({"iteration": 0, "model": cfg.models[0], "role": "teacher (labeled only)",
                 "labeled": labeled, "pseudo_labeled": 0, **result})
    for i, student in enumerate(cfg.models[1:], start=1):
        teacher_model = posixpath.join(teacher_dir, "model.keras")
        preds, pseudo, student_dir = (run_layout.step_dir(cfg.run_dir, i, d)
                                      for d in (run_layout.PREDICTIONS, run_layout.PSEUDO, run_layout.STUDENT))
        predict_config = predict_step_config(cfg, base, teacher_model, preds, f"iter{i - 1}:{cfg.models[i - 1]}")
        _step(manifest, f"iter{i}/predict", posixpath.join(preds, dataset_dir.SUMMARY_FILE),
              lambda: _beam_result(predict.run_config(predict_config, cfg.beam_args)), teacher=teacher_model)
        select_config = override(select.SelectConfig(
            predictions=preds, output_dir=pseudo, num_image=num_image, overwrite=True, seed=cfg.seed,
            **select_overrides, **cfg.select_overrides), cfg.select_args, "--select_args")
        selected = _step(manifest, f"iter{i}/select", posixpath.join(pseudo, dataset_dir.SUMMARY_FILE),
                         lambda: _select_result(select.run_config(select_config, cfg.beam_args)),
                         predictions=preds)
        result = train(f"iter{i}/student", student_dir, model=student, mode="offline", unlabeled_data=pseudo,
                       teacher=teacher_model)
        rows.append({"iteration": i, "model": student, "role": f"student of iter{i - 1}", "labeled": labeled,
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
    then the user's --predict_args."""
    from beam_pipelines import predict
    from noisystudent.typed_flags import override

    return override(predict.PredictConfig(
        input=cfg.data, split=cfg.unlabeled_split, model=teacher_model, output_dir=output_dir,
        teacher_name=teacher_name, overwrite=True, seed=cfg.seed,
        **{"center_crop": recipe.eval_center_crop, **cfg.predict_overrides}), cfg.predict_args, "--predict_args")


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


def from_experiment(experiment, run_dir: str, seed: int) -> LoopConfig:
    """The loop of one seed of an experiment (noisystudent/app/experiment.py); the manifest records the
    resolved experiment, so a re-run under another one is refused (check_same_run)."""
    from noisystudent.app import experiment as experiment_lib

    select = dict(experiment.select)
    return LoopConfig(
        data=experiment.data.replace("{seed}", str(seed)).replace("{run_dir}", run_dir), run_dir=run_dir,
        models=list(experiment.models), preset=experiment.preset, labeled_split=experiment.labeled_split,
        unlabeled_split=experiment.unlabeled_split, eval_split=experiment.eval_split,
        num_image=select.pop("num_image", 0), seed=seed, train_overrides=dict(experiment.train),
        predict_overrides=dict(experiment.predict), select_overrides=select,
        experiment=experiment_lib.resolved(experiment))


def run_experiment_flags(parser: argparse.ArgumentParser, argv: Sequence[str], given: Sequence[str]):
    """(the experiment, the parsed flags) of `--config F [--config.X V ...]`, refusing the shorthand flags
    beside it (each setting has one place)."""
    from noisystudent.app import experiment as experiment_lib

    rest, pairs = experiment_lib.split_config_flags(argv)
    args = parser.parse_args(rest)
    both = sorted({a.split("=")[0] for a in rest} & set(given))
    if both:
        raise ValueError(f"{', '.join(both)} with --config: set them in the experiment or as "
                         f"--config.FIELD VALUE (e.g. --config.models a,b), once")
    return experiment_lib.override(experiment_lib.load(args.config), pairs), args


def run(argv: Optional[Sequence[str]] = None) -> list[dict]:
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if any(a == "--config" or a.startswith("--config=") for a in argv):
        from noisystudent.app import experiment as experiment_lib

        experiment, args = run_experiment_flags(parser, argv, EXPERIMENT_FLAGS)
        if args.print_config:
            print(json.dumps(experiment_lib.resolved(experiment), indent=2))
            return []
        if not args.run_dir:
            raise ValueError("--run_dir: where the experiment's steps write")
        if len(experiment.seeds) > 1:
            log.info("the loop runs the experiment's first seed (%d); benchmark --config runs them all",
                     experiment.seeds[0])
        rows = run_loop(from_experiment(experiment, args.run_dir, experiment.seeds[0]))
        print(format_table(rows))
        return rows
    args = parser.parse_args(argv)
    if args.print_config:
        parser.error("--print_config prints an experiment: give --config F")
    for flag in ("data", "run_dir", "models"):
        if not getattr(args, flag):
            parser.error(f"--{flag} is required (or --config F)")
    cfg = LoopConfig(data=args.data, run_dir=args.run_dir, models=[m.strip() for m in args.models.split(",")],
                     preset=args.preset, labeled_split=args.labeled_split, unlabeled_split=args.unlabeled_split,
                     eval_split=args.eval_split, num_image=args.num_image, min_threshold=args.min_threshold,
                     seed=args.seed, train_args=tuple(args.train_args.split()),
                     select_args=tuple(args.select_args.split()), predict_args=tuple(args.predict_args.split()),
                     beam_args=tuple(args.beam_args.split()))
    rows = run_loop(cfg)
    print(format_table(rows))
    return rows
