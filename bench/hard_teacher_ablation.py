"""The harder-teacher ablation of docs/benchmarks.md ("When the teacher is often wrong"): the paper's levers
one at a time, each a benchmark of its own over the same seeds, paired with a finished defaults benchmark.

Every lever's loop starts from the defaults run's own steps that the lever does not change (its teacher;
its predictions when predict is unchanged; its selection when only the student's training changes),
copied into the lever's run dir with their manifest entries. The teacher is therefore the same model in
every cell, and a lever's difference to the defaults is the lever's alone, seed by seed. The references
(the ceiling, the student's model on the labels alone) are the defaults run's.

    python bench/hard_teacher_ablation.py --data "runs/mnist/l3/data-seed{seed}" --config.select.min_threshold 0.3 \\
        --defaults runs/mnist/l3/bench-defaults --run_root runs/mnist/l3/ablation --levers soft,confident_third,unlabeled_weight_1 \\
        --output bench/results/mnist_hard_teacher_ablation

A lever's cell runs the first student iteration (third_iteration: a third, on the defaults' two) and
compares its last student with the defaults' student of the same iteration (or the defaults' last). A
cell of more iterations starts from the finished cell of the same fields (threshold_0.7_2_iterations from
threshold_0.7). Re-running resumes every cell.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from noisystudent import dataset_dir, run_layout  # noqa: E402
from noisystudent.app import benchmark, experiment as experiment_lib, loop  # noqa: E402

# name -> (what it changes, the experiment's dotted fields[, student iterations: 1 unless said])
LEVERS = {
    "soft": ("soft targets, T = 1 (the original's SVHN and ImageNet scripts) instead of hard",
             {"student.label_type": "soft", "student.temperature": 1.0}),
    "confident_third": ("keep the confident third: num_image = a third of unlabeled/classes, so each class keeps "
                        "its most confident images", {"select.num_image": 2000}),
    "threshold_0.7": ("min_threshold 0.7 instead of 0.3", {"select.min_threshold": 0.7}),
    "unlabeled_weight_1": ("unlabeled loss weight 1 instead of unlabel_ratio (3)", {"student.unlabeled_weight": 1.0}),
    "randaugment_9": ("the student's RandAugment magnitude 9 instead of 3 (the teacher's stays 3)",
                      {"student.randaugment_magnitude": 9.0}),
    "randaugment_9_2_iterations": ("randaugment_9 at both iterations", {"student.randaugment_magnitude": 9.0}, 2),
    "confident_third_randaugment_9": ("confident_third and randaugment_9 together",
                                      {"select.num_image": 2000, "student.randaugment_magnitude": 9.0}),
    "confident_third_randaugment_9_2_iterations": ("confident_third_randaugment_9 at both iterations",
                                                   {"select.num_image": 2000, "student.randaugment_magnitude": 9.0}, 2),
    "budget_10_epochs": ("the student's budget: 10 passes of the pseudo-labeled set (6,250 steps of 96) instead "
                         "of about 3 (2,000 steps)", {"student.train_steps": 6250}),
    "confident_third_2_iterations": ("confident_third at both iterations (each teacher's most confident third)",
                                     {"select.num_image": 2000}, 2),
    "threshold_0.7_2_iterations": ("min_threshold 0.7 at both iterations", {"select.min_threshold": 0.7}, 2),
    "floor_0.3_2_iterations": ("select's own floor, min_threshold 0.3 (the loop's before 0.7), at both iterations",
                               {"select.min_threshold": 0.3}, 2),
    "third_iteration": ("a third student iteration (cnn-medium again), on the defaults run's two", {}, 3),
}
SHARED_STEPS = {  # the steps a lever takes from the defaults run: those before the first it changes
    "train": (),  # train trains the teacher too: a train.* lever shares nothing (student.* is the students')
    "student": ("iter0/teacher", "iter1/predict", "iter1/select"),
    "select": ("iter0/teacher", "iter1/predict"),
    "predict": ("iter0/teacher",),
}
log = logging.getLogger("hard_teacher_ablation")


def lever_experiment(defaults: experiment_lib.Experiment, fields: dict, student_iterations: int, title: str):
    exp = experiment_lib.apply(defaults, fields)
    models = (defaults.models + defaults.models[-1:] * student_iterations)[:student_iterations + 1]
    return dataclasses.replace(exp, models=models, ceiling=False, robustness=False, title=title)


def shared_steps(fields: dict, defaults_steps: dict) -> list[str]:
    """The defaults run's steps a lever keeps: with no field changed (more iterations), all of them."""
    if not fields:
        return list(defaults_steps)
    return list(min((SHARED_STEPS[dotted.partition(".")[0]] for dotted in fields), key=len))


def iterations(name: str) -> int:
    """A lever's student iterations (the third element of its LEVERS entry; 1 when absent)."""
    return LEVERS[name][2] if len(LEVERS[name]) > 2 else 1


def earlier_cell(name: str) -> str | None:
    """The lever with the same fields and the most iterations below this one's (threshold_0.7 for
    threshold_0.7_2_iterations): its finished steps are this cell's first iterations."""
    fields = LEVERS[name][1]
    fewer = [(iterations(other), other) for other in LEVERS
             if LEVERS[other][1] == fields and iterations(other) < iterations(name)]
    return max(fewer)[1] if fewer and fields else None


def _copy_steps(source_loop_dir: str, names: list[str], lever_loop_dir: str) -> dict:
    """Copy finished steps' folders into a lever's run dir; returns their manifest entries."""
    previous = dataset_dir.read_json(os.path.join(source_loop_dir, loop.MANIFEST))["steps"]
    for name in names:
        if previous.get(name, {}).get("status") != "done":
            raise SystemExit(f"{source_loop_dir}: step {name} is not done; finish that benchmark first")
        shutil.copytree(run_layout.manifest_step_dir(source_loop_dir, name),
                        run_layout.manifest_step_dir(lever_loop_dir, name))
    return {name: dict(previous[name]) for name in names}


def seed_from_defaults(lever_loop: loop.LoopConfig, defaults_loop_dir: str, fields: dict,
                       earlier_loop_dir: str | None = None) -> None:
    """Copy the defaults run's shared steps (folders and manifest entries, marked shared_from) into a new
    lever run dir, then an earlier same-fields cell's other finished steps (marked resumed_from: they are
    this lever's own compute); an existing run dir is left to resume."""
    if os.path.exists(os.path.join(lever_loop.run_dir, loop.MANIFEST)):
        return
    defaults_steps = dataset_dir.read_json(os.path.join(defaults_loop_dir, loop.MANIFEST))["steps"]
    steps = {name: {**step, "shared_from": defaults_loop_dir} for name, step in _copy_steps(
        defaults_loop_dir, shared_steps(fields, defaults_steps), lever_loop.run_dir).items()}
    if earlier_loop_dir:
        earlier = dataset_dir.read_json(os.path.join(earlier_loop_dir, loop.MANIFEST))["steps"]
        names = [n for n, step in earlier.items() if n not in steps and step.get("status") == "done"]
        for name, step in _copy_steps(earlier_loop_dir, names, lever_loop.run_dir).items():
            steps[name] = step if "shared_from" in step else {**step, "resumed_from": earlier_loop_dir}
    with open(os.path.join(lever_loop.run_dir, loop.MANIFEST), "w") as f:
        json.dump({"config": lever_loop.manifest_config(), "steps": steps}, f, indent=2)


def per_seed_top1(result: dict, iteration: int) -> dict[int, float]:
    return {int(s): rows[iteration]["top1_accuracy"] for s, rows in result["per_seed"].items()}


def own_seconds(loop_dir: str) -> float:
    """The compute a lever's loop spent itself: its steps not copied from the defaults run."""
    steps = dataset_dir.read_json(os.path.join(loop_dir, loop.MANIFEST))["steps"].values()
    return round(sum(s.get("seconds", 0.0) for s in steps if "shared_from" not in s), 1)


def labels_alone(defaults: dict) -> dict:
    """The student's model on the labels alone: the benchmark's reference, or, when the students are the
    teacher's model (the digits demo: no separate reference is trained), the teacher row itself."""
    if defaults.get("labeled_only"):
        return defaults["labeled_only"]
    return defaults["rows"][0]


def cell(name: str, what: str, result: dict, defaults: dict, iteration: int, seconds: dict) -> dict:
    """One lever against the defaults at the same iteration (or the defaults' last): paired differences and
    the gaps closed."""
    mine = per_seed_top1(result, iteration)
    base = per_seed_top1(defaults, min(iteration, len(defaults["rows"]) - 1))
    teacher = per_seed_top1(defaults, 0)
    ceiling, alone = defaults["ceiling"]["mean_top1"], labels_alone(defaults)["mean_top1"]
    mean = statistics.mean(mine.values())
    precision = [rows[iteration].get("pseudo_label_precision") for rows in result["per_seed"].values()]
    return {"lever": name, "what": what, "iteration": iteration, "top1": mine,
            "mean": mean, "std": statistics.stdev(mine.values()) if len(mine) > 1 else 0.0,
            "paired_difference": {s: mine[s] - base[s] for s in mine},
            "mean_difference": statistics.mean(mine[s] - base[s] for s in mine),
            "wins": sum(mine[s] > base[s] for s in mine),
            "teacher_gap_closed": (mean - statistics.mean(teacher.values())) / (ceiling - statistics.mean(
                teacher.values())),
            "own_gap_closed": (mean - alone) / (ceiling - alone),
            "pseudo_label_precision": statistics.mean(p for p in precision if p is not None)
            if any(p is not None for p in precision) else None,
            "pseudo_labeled": statistics.mean(rows[iteration]["pseudo_labeled"] for rows in result["per_seed"].values()),
            "seconds": seconds}


def format_markdown(title: str, defaults: dict, cells: list[dict]) -> str:
    ceiling, alone = defaults["ceiling"], labels_alone(defaults)
    def spread(r: dict) -> str:
        return f"{100 * r['mean_top1']:.2f} +- {100 * r['stdev_top1']:.2f}"

    lines = [f"# {title}", "",
             f"References (the defaults run's): teacher {spread(defaults['rows'][0])}, {alone['model']} on the "
             f"labels alone {spread(alone)}, ceiling {spread(ceiling)}; the defaults' students "
             + ", ".join(f"iter{r['iteration']} {spread(r)}" for r in defaults["rows"][1:]) + ".", "",
             "| lever | iteration | top-1 | vs defaults (paired) | wins | teacher gap closed | own gap closed | "
             "kept right | pseudo-labeled | compute s/seed |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        precision = "-" if c["pseudo_label_precision"] is None else f"{100 * c['pseudo_label_precision']:.1f}%"
        lines.append(f"| {c['lever']} | {c['iteration']} | {100 * c['mean']:.2f} +- {100 * c['std']:.2f} | "
                     f"{100 * c['mean_difference']:+.2f} | {c['wins']}/{len(c['top1'])} | "
                     f"{100 * c['teacher_gap_closed']:.0f}% | {100 * c['own_gap_closed']:.0f}% | {precision} | "
                     f"{c['pseudo_labeled']:,.0f} | {statistics.mean(c['seconds'].values()):,.0f} |")
    lines += [""] + [f"- **{c['lever']}**: {c['what']}" for c in cells]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="--config.FIELD VALUE: the defaults run's experiment as it ran (the "
                                            "tables of docs/benchmarks.md: --config.select.min_threshold 0.3, the "
                                            "loop's floor before it became 0.7)")
    parser.add_argument("--config", default="mnist_benchmark", help="the defaults run's experiment")
    parser.add_argument("--data", required=True, help="the defaults run's --data (with {seed})")
    parser.add_argument("--defaults", required=True, help="a finished benchmark run dir (with its references)")
    parser.add_argument("--run_root", required=True, help="each lever's benchmark runs in <run_root>/<lever>")
    parser.add_argument("--levers", required=True, help=f"comma-separated, of: {', '.join(LEVERS)}")
    parser.add_argument("--output", required=True, help="results prefix: writes <output>.json and <output>.md")
    parser.add_argument("--title", default="MNIST, 3 labels per class: the levers one at a time")
    rest, pairs = experiment_lib.split_config_flags(sys.argv[1:])
    args = parser.parse_args(rest)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    names = [n for n in args.levers.split(",") if n]
    unknown = [n for n in names if n not in LEVERS]
    if unknown:
        raise SystemExit(f"--levers: unknown {unknown} (known: {', '.join(LEVERS)})")
    defaults = dataset_dir.read_json(os.path.join(args.defaults, benchmark.RESULTS_JSON))
    if not defaults.get("ceiling") or not (defaults.get("labeled_only") or len(set(defaults["models"])) == 1):
        raise SystemExit(f"--defaults {args.defaults}: its benchmark.json has no references (run it with ceiling)")
    base = experiment_lib.override(experiment_lib.apply(experiment_lib.load(args.config), {"data": args.data}), pairs)
    for seed in base.seeds:  # the resume check: the defaults run is this experiment's, or its steps are not
        defaults_loop = run_layout.loop_dir(args.defaults, seed)
        recorded = dataset_dir.read_json(os.path.join(defaults_loop, loop.MANIFEST))["config"]
        loop.check_same_run(recorded, loop.LoopConfig(base, defaults_loop, seed).manifest_config(),
                            os.path.join(defaults_loop, loop.MANIFEST))
    cells = []
    for name in names:
        what, fields = LEVERS[name][:2]
        exp = lever_experiment(base, fields, iterations(name), f"{args.title}: {name}")
        cfg = benchmark.BenchmarkConfig(exp, os.path.join(args.run_root, name))
        earlier = earlier_cell(name)
        for seed in exp.seeds:
            earlier_dir = run_layout.loop_dir(os.path.join(args.run_root, earlier), seed) if earlier else None
            if earlier_dir and not os.path.exists(os.path.join(earlier_dir, loop.MANIFEST)):
                earlier_dir = None  # not run: this cell runs its first iterations itself
            seed_from_defaults(cfg.loop(seed), run_layout.loop_dir(args.defaults, seed), fields, earlier_dir)
        log.info("lever %s: %s", name, what)
        result = benchmark.run_benchmark(cfg)
        cells.append(cell(name, what, result, defaults, iterations(name),
                          {seed: own_seconds(cfg.loop(seed).run_dir) for seed in exp.seeds}))
    with open(f"{args.output}.json", "w") as f:
        json.dump({"title": args.title, "defaults": args.defaults, "cells": cells}, f, indent=2)
    with open(f"{args.output}.md", "w") as f:
        f.write(format_markdown(args.title, defaults, cells) + "\n")
    print(format_markdown(args.title, defaults, cells))


if __name__ == "__main__":
    main()
