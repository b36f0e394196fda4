"""The demo: the Noisy Student method on scikit-learn's bundled digits, offline.

Today it runs the first stage of the loop (ingesting the embedded data as
image records) and says what comes next; each later stage joins it as it lands.
"""

from __future__ import annotations

import argparse
import json
import logging
import posixpath
from typing import Optional, Sequence

from beam_pipelines import ingest_digits

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="noisystudent demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run_dir", default="runs/demo", help="Where every step writes (default runs/demo).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the data split.")
    return parser


def run(argv: Optional[Sequence[str]] = None) -> dict:
    args = build_parser().parse_args(argv)
    data_dir = posixpath.join(args.run_dir, "data")
    log.info("step 1/1: ingest the bundled digits into %s", data_dir)
    summary = ingest_digits.run(["--output_dir", data_dir, "--seed", str(args.seed), "--overwrite"])
    counts = {split: v["records"] for split, v in summary["splits"].items()}
    print(json.dumps({"data_dir": data_dir, "records": counts}, indent=2))
    print("next: train the teacher on 'labeled', label 'unlabeled' with it (Beam), select "
          "confident labels, train the noised student; these stages are being built.")
    return summary


if __name__ == "__main__":
    run()
