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
import logging
import posixpath
from typing import Optional, Sequence

import tensorflow as tf

from beam_pipelines import ingest_digits
from noisystudent import dataset_dir, run_layout
from noisystudent.app import experiment
from noisystudent.app import benchmark

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="noisystudent demo", description=__doc__.split("\n\n")[0],
                                     epilog="The rest is the shipped digits_demo experiment "
                                            "(noisystudent/app/experiments/digits_demo.py).")
    parser.add_argument("--run_dir", default="runs/demo", help="Where every step writes (default runs/demo).")
    parser.add_argument("--seeds", help="Comma-separated seeds (default: the experiment's, 0,1,2).")
    parser.add_argument("--iterations", type=int, help="Student iterations (default: the experiment's, 2).")
    parser.add_argument("--model", help="Teacher and students (default: the experiment's, cnn-small).")
    parser.add_argument("--labels_per_class", type=int,
                        help="Labeled digits per class (default: ingest-digits', 10).")
    parser.add_argument("--train_steps", type=int, help="Override the digits preset's steps.")
    parser.add_argument("--no_ceiling", action="store_true",
                        help="Skip the supervised ceiling (the same model trained on every label).")
    return parser


def run(argv: Optional[Sequence[str]] = None) -> dict:
    """The shipped digits_demo experiment (noisystudent/app/experiments/) with this command's flags on top:
    ingest the digits once per seed (its own labeled subset), then `noisystudent benchmark` on them."""
    args = build_parser().parse_args(argv)
    demo = experiment.load("digits_demo")
    values = {"ceiling": False} if args.no_ceiling else {}
    if args.seeds is not None:
        values["seeds"] = experiment.parse_value("seeds", args.seeds, "--seeds")
    if args.model or args.iterations is not None:
        values["models"] = [args.model or demo.models[0]] * (
            (len(demo.models) - 1 if args.iterations is None else args.iterations) + 1)
    if args.train_steps:
        values["train.train_steps"] = args.train_steps
    demo = experiment.apply(demo, values)
    seeds = demo.seeds
    cfg = benchmark.BenchmarkConfig(demo, args.run_dir)
    for seed in seeds:
        data_dir = cfg.data_for(seed)
        if not tf.io.gfile.exists(posixpath.join(data_dir, dataset_dir.SUMMARY_FILE)):
            log.info("seed %d: ingesting the bundled digits into %s", seed, data_dir)
            ingest_digits.run_config(ingest_digits.IngestDigitsConfig(
                data_dir, seed=seed, **({} if args.labels_per_class is None else
                                        {"labels_per_class": args.labels_per_class})))
    result = benchmark.run_benchmark(cfg)
    plots = [posixpath.join(run_layout.step_dir(run_layout.loop_dir(args.run_dir, seeds[0]), 1, run_layout.PSEUDO), p)
             for p in ("histograms.png", "samples.png")]
    print(benchmark.format_markdown(result))
    print(f"\nresults: {args.run_dir}/{benchmark.RESULTS_JSON} and {benchmark.RESULTS_MD}; selection plots: "
          f"{', '.join(plots)}")
    print(f"every step's outputs, the manifest and report.html: {args.run_dir}/seed*/loop/")
    return result


if __name__ == "__main__":
    run()
