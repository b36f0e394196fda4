"""Use a trained model on your own images: top-k classes (`classify`) or embeddings (`features`).

    noisystudent classify --model runs/demo/seed0/loop/iter2/student/model.keras photos/*.png
    noisystudent features --model runs/.../model.keras --output emb.npy photos/

Images are files, folders (walked) or globs; local or gs://. The model is a
`.keras` file or a SavedModel exported by the trainer; class names come from
the noisystudent.json the trainer writes beside it, or --class_names (a file
with one name per line); a 1,000-class model without names shows the ImageNet
class names shipped with the package (tench, goldfish, ...). An image that cannot be decoded is reported and
skipped; the others are classified.
"""

from __future__ import annotations

import argparse
import json
import posixpath
import sys
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from noisystudent import dataset_dir, imagenet_classes
from noisystudent.image_codec import BadImageError, is_image_name, normalize_encoded



def list_images(specs: Sequence[str]) -> list[str]:
    """Files, folders (recursively) and globs -> image paths, in order; errors name what is missing."""
    paths: list[str] = []
    for spec in specs:
        if dataset_dir.is_glob(spec):
            found = sorted(tf.io.gfile.glob(spec))
        elif tf.io.gfile.isdir(spec):
            found = sorted(posixpath.join(root, f) for root, _, files in tf.io.gfile.walk(spec) for f in files
                           if is_image_name(f))
        elif tf.io.gfile.exists(spec):
            found = [spec]
        else:
            raise FileNotFoundError(f"{spec}: no such file, folder or matching glob")
        if not found:
            raise FileNotFoundError(f"{spec}: no images found")
        paths += found
    return paths


def class_names_for(model_path: str, num_classes: int, names_file: Optional[str] = None) -> list[str]:
    """Names from --class_names, the trainer's noisystudent.json, ImageNet's (shipped), or indices."""
    if names_file:
        with tf.io.gfile.GFile(names_file) as f:
            names = [line.strip() for line in f if line.strip()]
        if len(names) != num_classes:
            raise ValueError(f"--class_names {names_file}: {len(names)} names for a {num_classes}-class model")
        return names
    base = model_path[:-len(".keras")] if model_path.endswith(".keras") else model_path
    folder = posixpath.dirname(base) if model_path.endswith(".keras") else base
    for candidate in (posixpath.join(folder, "saved_model", "noisystudent.json"),
                      posixpath.join(folder, "noisystudent.json")):
        if tf.io.gfile.exists(candidate):
            with tf.io.gfile.GFile(candidate) as f:
                names = json.load(f).get("class_names")
            if names and len(names) == num_classes:
                return list(names)
    if num_classes == imagenet_classes.NUM_CLASSES:
        return imagenet_classes.imagenet_class_names()
    return [str(i) for i in range(num_classes)]


def read_image(path: str) -> bytes:
    """An image file as bytes the model decodes (noisystudent/image_codec.py: the decoder ingest uses);
    BadImageError names the file."""
    with tf.io.gfile.GFile(path, "rb") as f:
        return normalize_encoded(f.read(), path)


def read_images(paths: Sequence[str]) -> tuple[list[int], list[bytes], dict[int, str]]:
    """(indices of the readable images, their bytes, {index: error} for the others)."""
    kept, encoded, errors = [], [], {}
    for i, path in enumerate(paths):
        try:
            encoded.append(read_image(path))
            kept.append(i)
        except BadImageError as e:
            errors[i] = str(e)
    return kept, encoded, errors


def classify(model_path: str, images: Sequence[str], top_k: int = 5, batch_size: int = 64,
             names_file: Optional[str] = None, center_crop: bool = False) -> list[dict]:
    """One dict per image: path and top-k (class, name, probability), or an error."""
    from noisystudent.teacher import load_teacher

    teacher = load_teacher(model_path, center_crop=center_crop, batch_size=batch_size)
    names = class_names_for(model_path, teacher.num_classes, names_file)
    paths = list_images(images)
    results = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        kept, encoded, errors = read_images(chunk)
        labels = teacher.label_each(encoded)
        by_index = {i: (row, p) for row, (i, p) in enumerate(zip(kept, labels.probabilities))}
        for i, path in enumerate(chunk):
            row, p = by_index.get(i, (None, None))
            if i in errors or row in labels.errors:
                results.append({"image": path, "error": errors.get(i) or labels.errors[row]})
                continue
            top = np.argsort(-p)[:top_k]
            results.append({"image": path, "top": [{"class": int(c), "name": names[c],
                                                    "probability": round(float(p[c]), 5)} for c in top]})
    return results


def extract_features(model_path: str, images: Sequence[str], output: str, layer: str = "avg_pool",
                     batch_size: int = 64, center_crop: bool = False) -> dict:
    """Pooled embeddings of a .keras model's `layer`, written as .npy (+ ids .json) or TFRecords."""
    import keras

    from noisystudent import records
    from noisystudent.teacher import load_keras_teacher

    if not model_path.endswith(".keras"):
        raise ValueError(f"--model {model_path}: features need the .keras model (its layers)")
    model = load_keras_teacher(model_path, "--model")
    try:
        embed = keras.Model(model.input, model.get_layer(layer).output)
    except ValueError:
        raise ValueError(f"--layer {layer!r} is not a layer of {model.name}") from None
    size = int(model.input_shape[1])
    embed_batch = _embedder(embed, size, center_crop, batch_size)
    paths = list_images(images)
    parts, kept, failed = [], [], []
    for start in range(0, len(paths), batch_size):  # only the embeddings stay in memory
        chunk = paths[start:start + batch_size]
        readable, encoded, errors = read_images(chunk)
        vectors, rows = embed_batch(encoded)
        embedded = {readable[r] for r in rows}
        failed += [path for i, path in enumerate(chunk) if i not in embedded]
        kept += [chunk[readable[r]] for r in rows]
        parts.append(vectors)
    embeddings = np.concatenate(parts) if kept else np.zeros((0, 0))
    if output.endswith(".npy"):
        with tf.io.gfile.GFile(output, "wb") as f:
            np.save(f, embeddings)
        with tf.io.gfile.GFile(output[:-4] + ".ids.json", "w") as f:
            json.dump(kept, f)
    else:
        with tf.io.TFRecordWriter(output) as w:
            for path, vector in zip(kept, embeddings):
                w.write(records.encode_embedding(path, vector))
    return {"images": len(kept), "failed": failed, "dim": int(embeddings.shape[-1]) if len(kept) else 0,
            "output": output}


def _embedder(embed, size: int, center_crop: bool, batch_size: int):
    """encoded images -> (embeddings of the decodable ones, their rows): one jitted call per batch on JAX
    (host decoding, noisystudent/jax_teacher.py), the shared TensorFlow decode and an eager call otherwise."""
    import keras

    if keras.backend.backend() == "jax":
        from noisystudent.jax_teacher import HostDecoder, JittedModel

        forward, decoder = JittedModel(embed, batch_size), HostDecoder(size, center_crop)

        def embed_jax(encoded):
            pixels, rows, _ = decoder.decode(encoded)
            return (forward(pixels) if rows else np.zeros((0,) + tuple(embed.output_shape[1:]), np.float32)), rows

        return embed_jax
    from noisystudent import image_ops

    def embed_tf(encoded):
        images, rows = [], []
        for row, data in enumerate(encoded):
            try:
                images.append(image_ops.decode_image(tf.constant(data), size, center_crop))
                rows.append(row)
            except tf.errors.InvalidArgumentError:
                continue
        if not images:
            return np.zeros((0,) + tuple(embed.output_shape[1:]), np.float32), rows
        return np.asarray(embed(tf.stack(images), training=False)), rows

    return embed_tf


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("images", nargs="+", help="Image files, folders or globs.")
    parser.add_argument("--model", required=True, help="A .keras file (or, for classify, a SavedModel dir).")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--center_crop", action="store_true",
                        help="The original's ImageNet eval crop (central size/(size+32), bicubic); "
                             "the published ImageNet checkpoints expect it.")
    return parser


def run(argv: Optional[Sequence[str]] = None) -> list[dict]:
    parser = _parser("noisystudent classify", "Top-k classes for your images.")
    parser.add_argument("--top_k", type=int, default=5)
    parser.add_argument("--class_names", help="A file with one class name per line.")
    parser.add_argument("--json", action="store_true", help="Print JSON lines instead of a table.")
    args = parser.parse_args(argv)
    results = classify(args.model, args.images, args.top_k, args.batch_size, args.class_names, args.center_crop)
    for r in results:
        if args.json:
            print(json.dumps(r))
        elif "error" in r:  # the decoder's errors name the file already
            print(r["error"] if r["error"].startswith(r["image"]) else f"{r['image']}: {r['error']}", file=sys.stderr)
        else:
            print(f"{r['image']}: " + ", ".join(f"{t['name']} {t['probability']:.3f}" for t in r["top"]))
    return results


def run_features(argv: Optional[Sequence[str]] = None) -> dict:
    parser = _parser("noisystudent features", "Pooled embeddings for your images (.npy or TFRecords).")
    parser.add_argument("--output", required=True, help="emb.npy (with emb.ids.json) or emb.tfrecord.")
    parser.add_argument("--layer", default="avg_pool", help="Layer whose output is the embedding.")
    args = parser.parse_args(argv)
    summary = extract_features(args.model, args.images, args.output, args.layer, args.batch_size, args.center_crop)
    print(json.dumps(summary))
    return summary
