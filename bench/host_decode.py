"""Host decoding for accelerator teachers: ms per image per core, against TensorFlow's decode in this process.

A JAX teacher on a GPU or TPU is fed by host threads (noisystudent/host_images.py). Its worker needs
about images/s x ms-per-image / 1000 cores to keep the accelerator busy. For each teacher size this
measures, on one thread, decoding a 500x375 JPEG (a typical web photo) and resizing it (bilinear,
antialiased) or center-cropping it (bicubic, the original's eval crop), with Pillow + NumPy (the
host path) and with tf.io + tf.image (the TensorFlow path) as the baseline in the same process.

    python bench/host_decode.py --sizes 224,380,600,800 --images 200
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def photos(n: int) -> list[bytes]:
    """Smooth, photo-like 500x375 JPEGs (random noise would make decoding unrealistically slow)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:375, 0:500]
    out = []
    for i in range(n):
        phase = rng.random(3) * 6.28
        image = np.stack([127 + 120 * np.sin(x / (40 + 7 * c) + y / (55 + 5 * c) + phase[c]) for c in range(3)], -1)
        image = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def per_image_ms(fn, encoded: list[bytes]) -> float:
    fn(encoded[0])  # warm-up (TensorFlow traces, caches weights)
    start = time.perf_counter()
    for e in encoded:
        fn(e)
    return 1e3 * (time.perf_counter() - start) / len(encoded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="224,380,600,800")
    parser.add_argument("--images", type=int, default=200)
    args = parser.parse_args()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from noisystudent import host_images, image_ops

    encoded = photos(args.images)
    for size in (int(s) for s in args.sizes.split(",")):
        for crop in (False, True):
            host = per_image_ms(lambda e: host_images.model_input(e, size, crop), encoded)
            decode = tf.function(lambda e: image_ops.decode_image(e, size, crop))
            tensorflow = per_image_ms(lambda e: decode(tf.constant(e)).numpy(), encoded)
            print(json.dumps({"size": size, "center_crop": crop, "source": "500x375 JPEG",
                              "host_ms_per_image": round(host, 2), "tensorflow_ms_per_image": round(tensorflow, 2),
                              "host_to_tensorflow": round(host / tensorflow, 2)}), flush=True)


if __name__ == "__main__":
    main()
