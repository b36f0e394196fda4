"""The evaluate Beam job at tens of thousands of scored images: its figures and counts, and its throughput
as a ratio to the one-process evaluation (`robustness.score`, what the benchmark runs) on the same images.

Both score `--model` and `--reference` on the first `--images` test images under the same corruptions and
FGSM steps; the job's start-up (pipeline, two model loads per role) is included. The job must give the
identical figures, and its summary.json must account for every record under every (model, condition).

    python bench/evaluate_job.py --data runs/mnist/l10/data-seed0 \\
        --model runs/mnist/l10/bench-config/seed0/loop/iter2/student/model.keras \\
        --reference runs/mnist/l10/bench-config/seed0/loop/iter0/teacher/model.keras --images 10000
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from beam_pipelines import evaluate  # noqa: E402
from noisystudent import corruptions, robustness  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--model", required=True)
    parser.add_argument("--reference", required=True)
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--corruptions", default="brightness,contrast,pixelate,jpeg_compression")
    parser.add_argument("--severities", default="1,3,5")
    parser.add_argument("--fgsm_epsilons", default="2,8")
    parser.add_argument("--output", default="")
    args = parser.parse_args()
    names, severities = corruptions.parse_names(args.corruptions), corruptions.parse_severities(args.severities)
    epsilons = robustness.parse_epsilons(args.fgsm_epsilons)
    roles = {"model": args.model, "reference": args.reference}

    start = time.perf_counter()
    images = robustness.read_images(args.data, args.split, args.images)
    tallies = robustness.score(images, {r: robustness.Scorer(p, f"--{r}") for r, p in roles.items()}, names,
                               severities, epsilons)
    one_process = robustness.evaluation_result(tallies, names, severities, epsilons)
    one_process_s = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        summary = evaluate.run_config(evaluate.EvaluateConfig(
            model=args.model, reference=args.reference, data=args.data, split=args.split, output_dir=out,
            corruptions=args.corruptions, severities=args.severities, fgsm_epsilons=args.fgsm_epsilons,
            max_images=args.images))
        job_s = time.perf_counter() - start
    job = summary["evaluation"]
    keys = robustness.condition_keys(names, severities, epsilons)
    scored = sum(summary["accounting"][f"{r} {k}"]["scored"] for r in roles for k in keys)
    same = all(job[k] == one_process[k] for k in ("clean", "corruptions", "fgsm", "ce", "mce", "reference_scores"))
    result = {
        "images": len(images), "conditions": len(keys), "models": len(roles), "scored_images": scored,
        "input_records": summary["input_records"], "dead_letter": summary["dead_letter"],
        "every_count_balanced": len(summary["accounting"]) == len(roles) * len(keys),
        "figures_identical": same, "one_process_s": round(one_process_s, 1), "job_s": round(job_s, 1),
        "job_over_one_process_throughput": round(one_process_s / job_s, 3),
        "clean_top1": job["clean"]["top1"], "mce": job["mce"],
    }
    print(json.dumps(result, indent=2))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(result, f, indent=2)
    if not same or scored != len(roles) * len(keys) * len(images):
        raise SystemExit("the job's figures or counts differ from the one-process evaluation's")


if __name__ == "__main__":
    main()
