"""The demo: Noisy Student on scikit-learn's bundled digits, offline, on 2 CPU cores.

For each seed: ingest the digits (10 labels per class, 1,197 unlabeled, 500
test), train a noised teacher on the 100 labeled images only, then two
iterations of predict (Beam) -> select (Beam) -> noised student (Keras). The
teacher gets the same noise as the students (RandAugment, dropout, stochastic
depth), so the table's gain is the method's, not the noise's. A supervised
ceiling (the same model and recipe on every label outside the test split)
shows how much of the gap the method closes. Runs are noisy (+-1.5 points), so
the table gives the mean and spread over seeds.
"""

from __future__ import annotations

import argparse
import json
import logging
import posixpath
import statistics
import time
from typing import Optional, Sequence

import tensorflow as tf

from beam_pipelines import ingest_digits
from noisystudent import dataset_dir
from noisystudent.app import loop

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="noisystudent demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run_dir", default="runs/demo", help="Where every step writes (default runs/demo).")
    parser.add_argument("--seeds", default="0,1,2", help="Comma-separated seeds (default 0,1,2).")
    parser.add_argument("--iterations", type=int, default=2, help="Student iterations (default 2).")
    parser.add_argument("--model", default="cnn-small", help="Teacher and students (default cnn-small).")
    parser.add_argument("--labels_per_class", type=int, default=10)
    parser.add_argument("--train_steps", type=int, default=0, help="Override the digits preset's steps.")
    parser.add_argument("--no_ceiling", action="store_true",
                        help="Skip the supervised ceiling (the same model trained on every label).")
    return parser


def aggregate(per_seed: dict[int, list[dict]]) -> list[dict]:
    """Mean and spread of test accuracy per iteration across seeds."""
    rows = []
    for i, first in enumerate(next(iter(per_seed.values()))):
        accs = [rows_[i]["top1_accuracy"] for rows_ in per_seed.values()]
        rows.append({"iteration": i, "model": first["model"], "role": first["role"],
                     "labeled": first["labeled"],
                     "pseudo_labeled": round(statistics.mean(r[i]["pseudo_labeled"] for r in per_seed.values())),
                     "mean_top1": statistics.mean(accs),
                     "stdev_top1": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                     "per_seed_top1": accs})
        precisions = [r[i]["pseudo_label_precision"] for r in per_seed.values() if "pseudo_label_precision" in r[i]]
        if precisions:
            rows[-1]["mean_precision"] = statistics.mean(precisions)
            names = next(r[i]["per_class_precision"] for r in per_seed.values() if "per_class_precision" in r[i])
            rows[-1]["mean_class_precision"] = {
                name: statistics.mean(p for r in per_seed.values()
                                      if (p := r[i].get("per_class_precision", {}).get(name)) is not None)
                for name in names if any(r[i].get("per_class_precision", {}).get(name) is not None
                                         for r in per_seed.values())}
    return rows


def supervised_ceiling(seed_dir: str, seed: int, model: str, train_overrides: dict) -> dict:
    """The same model and recipe trained on every label outside the test split (the same test split)."""
    from trainer import task

    data_dir = posixpath.join(seed_dir, "data_all_labels")
    out = posixpath.join(seed_dir, "ceiling")
    report_path = posixpath.join(out, "eval.json")
    if tf.io.gfile.exists(report_path):
        with tf.io.gfile.GFile(report_path) as f:
            report = json.load(f)
    else:
        if not tf.io.gfile.exists(posixpath.join(data_dir, "summary.json")):
            ingest_digits.run_config(ingest_digits.IngestDigitsConfig(data_dir, labels_per_class=0, seed=seed))
        import keras

        from trainer.config import get_config

        keras.backend.clear_session()
        report = task.train(get_config(
            "digits", labeled_data=data_dir, labeled_split="labeled", eval_split="test", seed=seed, model=model,
            mode="supervised", output_dir=out, **train_overrides))
    labeled = dataset_dir.load_summary(data_dir).split("labeled").records
    return {"top1_accuracy": report["top1_accuracy"], "labeled": labeled}


def format_table(rows: list[dict], seeds: Sequence[int], ceiling: Optional[dict] = None) -> str:
    lines = [f"Noisy Student on digits, test accuracy over seeds {', '.join(map(str, seeds))}:", "",
             "iteration  model       role                      labeled  pseudo-labeled  test top-1 (mean +- sd)",
             "---------  ----------  ------------------------  -------  --------------  -----------------------"]
    for r in rows:
        lines.append(f"{r['iteration']:>9}  {r['model']:<10}  {r['role']:<24}  {r['labeled']:>7}  "
                     f"{r['pseudo_labeled']:>14}  {100 * r['mean_top1']:6.2f} +- {100 * r['stdev_top1']:.2f}")
    if ceiling:
        lines.append(f"{'-':>9}  {rows[0]['model']:<10}  {'ceiling (all labels)':<24}  {ceiling['labeled']:>7}  "
                     f"{0:>14}  {100 * ceiling['mean_top1']:6.2f} +- {100 * ceiling['stdev_top1']:.2f}")
    students = [r for r in rows if "mean_precision" in r]
    if students:
        lines += ["", "kept pseudo-labels that match the image's hidden true class (select's stats.json):"]
        lines += [f"  iteration {r['iteration']}'s data: {100 * r['mean_precision']:.1f}%; per class "
                  + " ".join(f"{name}:{100 * p:.0f}" for name, p in r["mean_class_precision"].items())
                  for r in students]
    gain = rows[-1]["mean_top1"] - rows[0]["mean_top1"]
    lines += ["", f"gain of the last student over the equally noised teacher: {100 * gain:+.2f} points"]
    gap = ceiling["mean_top1"] - rows[0]["mean_top1"] if ceiling else 0.0
    if gap > 0:
        lines.append(f"share of the teacher-to-ceiling gap the method closed: {100 * gain / gap:.0f}%")
    return "\n".join(lines)


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]; a clear error for an empty list, a non-integer or a repeated seed."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--seeds {text!r}: expected comma-separated integers, e.g. 0,1,2") from None
    if not seeds:
        raise ValueError(f"--seeds {text!r}: give at least one seed, e.g. 0,1,2")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {text!r}: a seed is repeated")
    return seeds


def run(argv: Optional[Sequence[str]] = None) -> dict:
    args = build_parser().parse_args(argv)
    seeds = parse_seeds(args.seeds)
    start = time.time()
    per_seed = {}
    train_overrides = {"verbose": 0, **({"train_steps": args.train_steps} if args.train_steps else {})}
    for seed in seeds:
        seed_dir = posixpath.join(args.run_dir, f"seed{seed}")
        data_dir = posixpath.join(seed_dir, "data")
        if not tf.io.gfile.exists(posixpath.join(data_dir, "summary.json")):
            log.info("seed %d: ingesting the bundled digits into %s", seed, data_dir)
            ingest_digits.run_config(ingest_digits.IngestDigitsConfig(
                data_dir, labels_per_class=args.labels_per_class, seed=seed))
        log.info("seed %d: teacher + %d student iterations in %s", seed, args.iterations, seed_dir)
        per_seed[seed] = loop.run_loop(loop.LoopConfig(
            data=data_dir, run_dir=posixpath.join(seed_dir, "loop"), models=[args.model] * (args.iterations + 1),
            preset="digits", seed=seed, train_overrides=train_overrides))
        log.info("seed %d: %s", seed, ", ".join(f"iter{r['iteration']} {100 * r['top1_accuracy']:.1f}%"
                                                for r in per_seed[seed]))
    rows = aggregate(per_seed)
    ceiling = None
    if not args.no_ceiling:
        per_seed_ceiling = {}
        for seed in seeds:
            log.info("seed %d: supervised ceiling (every label outside the test split)", seed)
            per_seed_ceiling[seed] = supervised_ceiling(posixpath.join(args.run_dir, f"seed{seed}"), seed,
                                                        args.model, train_overrides)
        accs = [c["top1_accuracy"] for c in per_seed_ceiling.values()]
        ceiling = {"labeled": next(iter(per_seed_ceiling.values()))["labeled"], "mean_top1": statistics.mean(accs),
                   "stdev_top1": statistics.stdev(accs) if len(accs) > 1 else 0.0, "per_seed_top1": accs}
    result = {"seeds": seeds, "rows": rows, "ceiling": ceiling, "per_seed": per_seed,
              "seconds": round(time.time() - start, 1),
              "selection_plots": [posixpath.join(args.run_dir, f"seed{seeds[0]}", "loop", "iter1", "pseudo", p)
                                  for p in ("histograms.png", "samples.png")]}
    with tf.io.gfile.GFile(posixpath.join(args.run_dir, "demo_results.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(format_table(rows, seeds, ceiling))
    print(f"\nwall time {result['seconds']:.0f} s; selection plots: {', '.join(result['selection_plots'])}")
    print(f"every step's outputs and the manifest: {args.run_dir}/seed*/loop/manifest.json")
    return result


if __name__ == "__main__":
    run()
