"""`noisystudent benchmark`: the method measured on a dataset, over seeds, against its supervised ceiling.

    noisystudent benchmark --data 'runs/mnist/data-seed{seed}' --seeds 0,1,2 \\
        --models cnn-small,cnn-medium,cnn-medium --preset digits --run_dir runs/mnist/bench

For each seed: the loop (teacher on the labeled split, then one student per
iteration: predict -> select -> train), then the supervised ceiling (the last
student's model and the same recipe on every training label: the labeled split
plus the unlabeled images' hidden true classes; with a larger student, the
larger model's ceiling). When the last student's model differs from the
teacher's, that model is also trained on the labels alone, so the method's
gain is told apart from the larger model's. `{seed}` in --data picks one
dataset per seed (ingested with that seed: a different labeled subset each);
without it every seed shares one dataset and varies only training and
selection. Results go to <run_dir>/benchmark.json and benchmark.md: test top-1
per iteration (mean +- sd and per seed), the references, the gain, the share
of the teacher-to-ceiling gap closed, whether the last student beat the
teacher on every seed, kept pseudo-label precision per iteration (when the
data keeps true classes) and compute time. Re-run the same command to resume:
finished steps are skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import posixpath
import statistics
import time
from typing import Optional, Sequence

import tensorflow as tf

from noisystudent import dataset_dir, run_layout, splits
from noisystudent.app import ceiling as ceiling_lib
from noisystudent.app import experiment as experiment_lib
from noisystudent.app import loop
from noisystudent.app.experiment import Experiment

log = logging.getLogger(__name__)
RESULTS_JSON, RESULTS_MD = "benchmark.json", "benchmark.md"


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
    """An experiment (noisystudent/app/experiment.py) over its seeds, with the references, in one directory."""

    experiment: Experiment
    run_dir: str
    beam_args: tuple[str, ...] = ()

    def loop(self, seed: int) -> loop.LoopConfig:
        """One seed's loop; "{run_dir}" in the data is the benchmark's run dir, not the loop's."""
        experiment = dataclasses.replace(self.experiment, data=self.experiment.data.replace("{run_dir}", self.run_dir))
        return loop.LoopConfig(experiment, run_layout.loop_dir(self.run_dir, seed), seed, self.beam_args)

    def data_for(self, seed: int) -> str:
        return self.experiment.data.replace("{seed}", str(seed)).replace("{run_dir}", self.run_dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="noisystudent benchmark", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawTextHelpFormatter)
    experiment_lib.add_flags(parser, benchmark=True)
    parser.add_argument("--run_dir", help="Where every run writes; benchmark.json/.md at its top.")
    parser.add_argument("--beam_args", default="", help="Beam flags for predict/select.")
    return parser


def _spread(values: list[float]) -> dict:
    return {"mean_top1": statistics.mean(values), "stdev_top1": statistics.stdev(values) if len(values) > 1 else 0.0,
            "per_seed_top1": values}


def aggregate(per_seed: dict[int, list[dict]]) -> list[dict]:
    """Per iteration: test accuracy mean, spread and per seed; kept pseudo-label precision when known."""
    rows = []
    for i, first in enumerate(next(iter(per_seed.values()))):
        at_i = [seed_rows[i] for seed_rows in per_seed.values()]
        row = {"iteration": i, "model": first["model"], "role": first["role"], "labeled": first["labeled"],
               "pseudo_labeled": round(statistics.mean(r["pseudo_labeled"] for r in at_i)),
               **_spread([r["top1_accuracy"] for r in at_i])}
        with_truth = [r for r in at_i if "pseudo_label_precision" in r]
        if with_truth:
            row["mean_precision"] = statistics.mean(r["pseudo_label_precision"] for r in with_truth)
            names = with_truth[0]["per_class_precision"]
            row["mean_class_precision"] = {
                name: statistics.mean(ps) for name in names
                if (ps := [p for r in with_truth if (p := r["per_class_precision"].get(name)) is not None])}
        rows.append(row)
    return rows


def summarise(rows: list[dict], ceiling: Optional[dict], alone: Optional[dict] = None,
              robustness: Optional[dict] = None) -> dict:
    """Gain of the last student, share of the gap closed, and whether it beat the teacher on every seed;
    with `alone` (the last student's model on the labels alone), the same against that model; with
    `robustness`, the last student's gain over the teacher on clean, corrupted and FGSM images."""
    teacher, last = rows[0], rows[-1]
    wins = sum(s > t for t, s in zip(teacher["per_seed_top1"], last["per_seed_top1"]))
    result = {"gain": last["mean_top1"] - teacher["mean_top1"], "seeds_beating_teacher": wins,
              "beats_teacher_on_every_seed": wins == len(teacher["per_seed_top1"])}
    if ceiling and ceiling["mean_top1"] > teacher["mean_top1"]:
        result["gap_closed"] = result["gain"] / (ceiling["mean_top1"] - teacher["mean_top1"])
    if alone:  # a larger student: the method's share, told apart from the larger model's
        result["gain_over_labeled_only"] = last["mean_top1"] - alone["mean_top1"]
        if ceiling and ceiling["mean_top1"] > alone["mean_top1"]:
            result["gap_closed_over_labeled_only"] = (result["gain_over_labeled_only"]
                                                      / (ceiling["mean_top1"] - alone["mean_top1"]))
    if robustness:
        models = robustness["models"]
        first, last = models[run_layout.iteration(0)], models[run_layout.iteration(len(rows) - 1)]
        gains = {"clean": last["clean"]["mean_top1"] - first["clean"]["mean_top1"]}
        if "mean_corrupted" in last:
            gains["corrupted"] = last["mean_corrupted"]["mean_top1"] - first["mean_corrupted"]["mean_top1"]
        for eps in last["fgsm"]:
            gains[f"fgsm_{eps}"] = last["fgsm"][eps]["mean_top1"] - first["fgsm"][eps]["mean_top1"]
        result["robustness_gain"] = gains
    return result


def format_markdown(result: dict) -> str:
    """benchmark.md: one table (the rows the demo and the benchmark print) and the summary lines."""
    rows, ceiling, seeds = result["rows"], result["ceiling"], result["seeds"]
    title = result.get("title") or f"Noisy Student on {result['data']}"
    lines = [f"## {title}: test top-1 over seeds {', '.join(map(str, seeds))}", "",
             "| iteration | model | role | labeled | pseudo-labeled | test top-1 (mean +- sd) | per seed "
             "| kept pseudo-labels right |", "|---|---|---|---:|---:|---|---|---:|"]

    def line(it, model, role, labeled, pseudo, r, precision=""):
        per_seed = ", ".join(f"{100 * a:.2f}" for a in r["per_seed_top1"])
        lines.append(f"| {it} | {model} | {role} | {labeled:,} | {pseudo:,} | "
                     f"{100 * r['mean_top1']:.2f} +- {100 * r['stdev_top1']:.2f} | {per_seed} | {precision} |")

    for r in rows:
        line(r["iteration"], r["model"], r["role"], r["labeled"], r["pseudo_labeled"], r,
             f"{100 * r['mean_precision']:.1f}%" if "mean_precision" in r else "")
    alone = result.get("labeled_only")
    if alone:
        line("-", alone["model"], "labeled only (no pseudo-labels)", alone["labeled"], 0, alone)
    if ceiling:
        line("-", ceiling.get("model", rows[0]["model"]), "ceiling (all labels)", ceiling["labeled"], 0, ceiling)
    students = [r for r in rows if "mean_class_precision" in r]
    if students:
        lines += ["", "kept pseudo-labels that match the image's hidden true class, per class (select's stats.json):"]
        lines += [f"- iteration {r['iteration']}'s data: " + " ".join(
            f"{name}:{100 * p:.0f}" for name, p in r["mean_class_precision"].items()) for r in students]
    s = result["summary"]
    lines.append("")
    if "gain_over_labeled_only" in s:  # first: what the method adds, told apart from the larger model's share
        text = (f"- the method's own gain, over {alone['model']} trained on the labels alone "
                f"({100 * alone['mean_top1']:.2f}): {100 * s['gain_over_labeled_only']:+.2f} points")
        if "gap_closed_over_labeled_only" in s:
            text += f", {100 * s['gap_closed_over_labeled_only']:.0f}% of that model's gap to its ceiling"
        lines.append(text)
    lines += [f"- gain of the last student over the equally noised teacher: {100 * s['gain']:+.2f} points",
              f"- the last student beat the teacher on {s['seeds_beating_teacher']} of {len(seeds)} seeds"]
    if "gap_closed" in s:
        lines.append(f"- share of the teacher-to-ceiling gap the method closed: {100 * s['gap_closed']:.0f}%")
    if result.get("robustness"):
        lines += [""] + format_robustness(result)
    per_seed = ", ".join(f"seed {k}: {v:.0f} s" for k, v in result["seconds_per_seed"].items())
    total = sum(result["seconds_per_seed"].values())
    lines.append(f"- compute time {total:.0f} s, per seed (every step of its loop and its references, as each step "
                 f"recorded it: resumed runs too): {per_seed}")
    return "\n".join(lines)


def format_robustness(result: dict) -> list[str]:
    """The robustness table: per model, clean / mean corrupted / FGSM top-1 and mCE against the teacher."""
    rob, rows = result["robustness"], result["rows"]
    settings, models = rob["settings"], rob["models"]
    teacher = models[run_layout.iteration(0)]
    epsilons = list(teacher["fgsm"])
    severities = settings["severities"]
    lines = [f"### Robustness: {rob['num_images']:,} {settings['split']} images; corruptions {settings['corruptions']} "
             f"at severities {severities} (noisystudent/corruptions.py); FGSM at {', '.join(epsilons) or 'none'} px",
             "", "| iteration | model | role | clean top-1 | mean corrupted top-1 | mCE vs teacher | "
             + "".join(f"FGSM {e} px | " for e in epsilons), "|---|---|---|---|---|---:|" + "---|" * len(epsilons)]

    def cell(spread: Optional[dict], scale: float = 100, digits: int = 2) -> str:
        return "" if not spread else f"{scale * spread['mean_top1']:.{digits}f} +- {scale * spread['stdev_top1']:.{digits}f}"

    named = [(str(r["iteration"]), r["model"], r["role"], run_layout.iteration(r["iteration"])) for r in rows]
    for reference, role in ((run_layout.LABELED_ONLY, "labeled only (no pseudo-labels)"),
                            (run_layout.CEILING, "ceiling (all labels)")):
        if reference in models:
            named.append(("-", (result.get("labeled_only") if reference == run_layout.LABELED_ONLY
                                else result.get("ceiling") or {}).get("model", ""), role, reference))
    for it, model, role, key in named:
        m = models[key]
        lines.append(f"| {it} | {model} | {role} | {cell(m['clean'])} | {cell(m.get('mean_corrupted'))} | "
                     f"{cell(m.get('mce'), 1, 3)} | " + "".join(f"{cell(m['fgsm'][e])} | " for e in epsilons))
    gains = result["summary"].get("robustness_gain", {})
    parts = [f"clean {100 * gains['clean']:+.2f}"] + ([f"corrupted {100 * gains['corrupted']:+.2f}"]
                                                    if "corrupted" in gains else [])
    parts += [f"FGSM {e} px {100 * gains[f'fgsm_{e}']:+.2f}" for e in epsilons]
    lines += ["", "- the last student over the equally noised teacher: " + ", ".join(parts) + " points"]
    return lines


def _step_seconds(loop_dir: str) -> float:
    """Compute time of a seed's loop from its manifest (right after a resume too, unlike the wall clock)."""
    with tf.io.gfile.GFile(posixpath.join(loop_dir, loop.MANIFEST)) as f:
        return sum(step.get("seconds", 0.0) for step in json.load(f)["steps"].values())


def _labeled_only(cfg: BenchmarkConfig, seconds: dict[int, float]) -> dict:
    """The last student's model trained as the teacher was (labeled split alone), per seed."""
    accs, labeled, model = [], 0, cfg.experiment.models[-1]
    for seed in cfg.experiment.seeds:
        log.info("seed %d: %s on the labels alone (the larger student's own reference)", seed, model)
        r = ceiling_lib.train_labeled_only(cfg.experiment, cfg.data_for(seed), run_layout.seed_dir(cfg.run_dir, seed),
                                           seed)
        accs.append(r["top1_accuracy"])
        labeled = r["labeled"]
        seconds[seed] += r["seconds"]
    return {"model": model, "labeled": labeled, **_spread(accs)}


def _models_of_seed(cfg: BenchmarkConfig, seed: int, iterations: int) -> dict[str, str]:
    """role -> model.keras of one seed: iter0 (the teacher), iter1.., and the references that ran."""
    loop_dir, seed_dir = run_layout.loop_dir(cfg.run_dir, seed), run_layout.seed_dir(cfg.run_dir, seed)
    models = {run_layout.iteration(i): posixpath.join(
        run_layout.step_dir(loop_dir, i, run_layout.TEACHER if i == 0 else run_layout.STUDENT), run_layout.MODEL_FILE)
        for i in range(iterations)}
    for reference in (run_layout.LABELED_ONLY, run_layout.CEILING):
        path = posixpath.join(seed_dir, reference, run_layout.MODEL_FILE)
        if tf.io.gfile.exists(path):
            models[reference] = path
    return models


def _robustness_of_seed(cfg: BenchmarkConfig, seed: int, iterations: int) -> dict:
    """Every model of a seed on the same clean, corrupted and FGSM images, mCE against the seed's teacher;
    kept in <loop dir>/robustness.json (reused when its settings match) and shown in its report.html."""
    from beam_pipelines.evaluate import EvaluateConfig
    from noisystudent import robustness
    from noisystudent.app import report

    exp = cfg.experiment
    resolved = experiment_lib.resolved(exp)
    settings = {**resolved["evaluate"], "split": resolved["eval_split"]}
    models = _models_of_seed(cfg, seed, iterations)
    path = posixpath.join(run_layout.loop_dir(cfg.run_dir, seed), run_layout.ROBUSTNESS_FILE)
    if tf.io.gfile.exists(path):
        kept = dataset_dir.read_json(path)
        if kept.get("settings") == settings and set(kept.get("models", {})) == set(models):
            return kept
    config = EvaluateConfig(model=models[run_layout.iteration(0)], data=cfg.data_for(seed), output_dir="", **settings)
    config.validate()
    names, severities, epsilons = config.conditions()
    start = time.time()
    images = robustness.read_images(config.data, config.split, config.max_images)
    log.info("seed %d: robustness of %s on %d images", seed, ", ".join(models), len(images))
    tallies = robustness.score(images, {role: robustness.Scorer(p, role) for role, p in models.items()}, names,
                               severities, epsilons, config.seed, config.center_crop, config.batch_size)
    teacher = robustness.scores(tallies[run_layout.iteration(0)], names, severities, epsilons)
    result = {"settings": settings, "num_images": len(images), "reference": run_layout.iteration(0),
              "models": {role: robustness.with_mce(robustness.scores(t, names, severities, epsilons), teacher)
                         for role, t in tallies.items()}, "seconds": round(time.time() - start, 1)}
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(result, f, indent=2)
    report.write_report(run_layout.loop_dir(cfg.run_dir, seed))
    return result


def aggregate_robustness(per_seed: dict[int, dict]) -> dict:
    """Per model role: clean, mean corrupted and FGSM top-1 and mCE against the teacher, mean +- sd over seeds."""
    first = next(iter(per_seed.values()))
    out = {}
    for role in first["models"]:
        at = [r["models"][role] for r in per_seed.values() if role in r["models"]]
        row = {"clean": _spread([m["clean"]["top1"] for m in at])}
        if "mean_corrupted_top1" in at[0]:
            row["mean_corrupted"] = _spread([m["mean_corrupted_top1"] for m in at])
        if at[0].get("mce") is not None:
            row["mce"] = _spread([m["mce"] for m in at])
        row["fgsm"] = {eps: _spread([m["fgsm"][eps]["top1"] for m in at]) for eps in at[0]["fgsm"]}
        out[role] = row
    return {"num_images": first["num_images"], "settings": first["settings"], "models": out}


def run_benchmark(cfg: BenchmarkConfig) -> dict:
    """Every seed's loop, then every seed's ceiling; writes benchmark.json and benchmark.md."""
    exp = cfg.experiment
    if (exp.labeled_split, exp.unlabeled_split) != (splits.LABELED, splits.UNLABELED) and exp.ceiling:
        raise ValueError(f"the benchmark's references (the ceiling, the student's model on the labels alone) read "
                         f"the {splits.LABELED!r} and {splits.UNLABELED!r} splits: pass --no_ceiling (ceiling=False "
                         "in an experiment), or run `noisystudent loop` on it")
    start = time.time()
    per_seed, seconds = {}, {}
    for seed in exp.seeds:
        loop_cfg = cfg.loop(seed)
        log.info("seed %d: teacher + %d student iterations on %s", seed, len(exp.models) - 1, loop_cfg.data())
        per_seed[seed] = loop.run_loop(loop_cfg)
        seconds[seed] = _step_seconds(loop_cfg.run_dir)
        log.info("seed %d: %s", seed, ", ".join(f"iter{r['iteration']} {100 * r['top1_accuracy']:.2f}%"
                                                for r in per_seed[seed]))
    ceiling = None
    if exp.ceiling:
        accs, labeled = [], 0
        for seed in exp.seeds:
            log.info("seed %d: supervised ceiling (every training label)", seed)
            c = ceiling_lib.train_ceiling(exp, cfg.data_for(seed), run_layout.seed_dir(cfg.run_dir, seed), seed)
            accs.append(c["top1_accuracy"])
            labeled = c["labeled"]
            seconds[seed] += c["seconds"]
        ceiling = {"model": exp.models[-1], "labeled": labeled, **_spread(accs)}
    alone = _labeled_only(cfg, seconds) if exp.ceiling and exp.models[-1] != exp.models[0] else None
    robustness = None
    if exp.robustness:
        robust = {seed: _robustness_of_seed(cfg, seed, len(exp.models)) for seed in exp.seeds}
        for seed, r in robust.items():
            seconds[seed] += r["seconds"]
        robustness = aggregate_robustness(robust)
    rows = aggregate(per_seed)
    result = {"title": exp.title, "data": exp.data, "seeds": exp.seeds, "models": exp.models, "preset": exp.preset,
              "experiment": experiment_lib.resolved(exp), "rows": rows,
              "ceiling": ceiling, "labeled_only": alone, "robustness": robustness,
              "summary": summarise(rows, ceiling, alone, robustness),
              "per_seed": per_seed, "seconds": round(time.time() - start, 1),
              "seconds_per_seed": {k: round(v, 1) for k, v in seconds.items()}}
    with tf.io.gfile.GFile(posixpath.join(cfg.run_dir, RESULTS_JSON), "w") as f:
        json.dump(result, f, indent=2)
    with tf.io.gfile.GFile(posixpath.join(cfg.run_dir, RESULTS_MD), "w") as f:
        f.write(format_markdown(result) + "\n")
    return result


def run(argv: Optional[Sequence[str]] = None) -> dict:
    import sys

    experiment, args = experiment_lib.parse_flags(build_parser(), list(sys.argv[1:] if argv is None else argv))
    if args.print_config:
        print(json.dumps(experiment_lib.resolved(experiment), indent=2))
        return {}
    if not args.run_dir:
        raise ValueError("--run_dir: where the benchmark's runs write")
    result = run_benchmark(BenchmarkConfig(experiment, args.run_dir, tuple(args.beam_args.split())))
    print(format_markdown(result))
    print(f"\nresults: {posixpath.join(args.run_dir, RESULTS_JSON)}, {posixpath.join(args.run_dir, RESULTS_MD)}")
    return result
