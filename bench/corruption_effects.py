"""What each ImageNet-C corruption does to a 32-px digit (noisystudent/corruptions.py): mean absolute pixel
change (0-255) per severity and the time per image, on scikit-learn's digits resized to 32 px as the models
see them. docs/robustness.md quotes the table.

    python bench/corruption_effects.py [--images 50] [--out bench/results/corruption_effects_digits32.json]
"""

import argparse
import json
import time

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from noisystudent import corruptions


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--out", default="bench/results/corruption_effects_digits32.json")
    args = parser.parse_args()
    digits = load_digits()
    pixels = [np.asarray(Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)).resize((32, 32))
                         .convert("RGB")) for i in range(args.images)]
    rows = {}
    for name in corruptions.CORRUPTIONS:
        start, change = time.perf_counter(), {}
        for severity in corruptions.SEVERITIES:
            change[severity] = float(np.mean([np.abs(corruptions.corrupt(p, name, severity, 0, f"d/{i}").astype(int)
                                                     - p).mean() for i, p in enumerate(pixels)]))
        seconds = (time.perf_counter() - start) / (len(pixels) * len(corruptions.SEVERITIES))
        rows[name] = {"mean_abs_change": change, "ms_per_image": round(1000 * seconds, 2),
                      "at_224": name in corruptions.AT_224}
        print(f"{name:18s} " + " ".join(f"{change[s]:6.1f}" for s in corruptions.SEVERITIES)
              + f"   {1000 * seconds:7.1f} ms/image" + ("  (at 224 px)" if name in corruptions.AT_224 else ""))
    with open(args.out, "w") as f:
        json.dump({"images": len(pixels), "image_size": 32, "corruptions": rows}, f, indent=2)


if __name__ == "__main__":
    main()
