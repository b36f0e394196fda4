"""Variable names of the original EfficientNet / Noisy Student TensorFlow checkpoints.

The published `noisy_student_efficientnet-bN` checkpoints (and the original
efficientnet_builder.py) name variables by TF1 scopes and tf.layers' automatic
numbering, e.g. for EfficientNet-B0:

    efficientnet-b0/stem/conv2d/kernel
    efficientnet-b0/stem/tpu_batch_normalization/gamma
    efficientnet-b0/blocks_3/conv2d/kernel                  (expansion)
    efficientnet-b0/blocks_3/depthwise_conv2d/depthwise_kernel
    efficientnet-b0/blocks_3/se/conv2d/bias                  (squeeze)
    efficientnet-b0/blocks_3/conv2d_1/kernel                 (projection)
    efficientnet-b0/blocks_3/tpu_batch_normalization_2/moving_variance
    efficientnet-b0/head/dense/kernel

Block 0 has no expansion conv, so its numbering starts one lower. Each variable
may also exist as `<name>/ExponentialMovingAverage` (the weights the authors
evaluated). This module maps our layer weights to those names (keras only).
"""

from __future__ import annotations

import keras

BN_WEIGHTS = ("gamma", "beta", "moving_mean", "moving_variance")


def _bn(ours: str, theirs: str) -> dict[str, str]:
    return {f"{ours}/{w}": f"{theirs}/{w}" for w in BN_WEIGHTS}


def original_names(model: keras.Model, scope: str) -> dict[str, str]:
    """{our weight path: original variable name} for an EfficientNet built by model/efficientnet.py."""
    layer_names = {layer.name for layer in model.layers}
    names = {"stem_conv/kernel": f"{scope}/stem/conv2d/kernel"}
    names.update(_bn("stem_bn", f"{scope}/stem/tpu_batch_normalization"))
    i = 1
    while f"block{i}_dwconv" in layer_names:
        ours, theirs = f"block{i}_", f"{scope}/blocks_{i - 1}/"
        expands = f"{ours}expand_conv" in layer_names
        if expands:
            names[f"{ours}expand_conv/kernel"] = theirs + "conv2d/kernel"
            names.update(_bn(f"{ours}expand_bn", theirs + "tpu_batch_normalization"))
        bn = (lambda k: theirs + "tpu_batch_normalization" + (f"_{k}" if k else ""))
        names[f"{ours}dwconv/kernel"] = theirs + "depthwise_conv2d/depthwise_kernel"
        names.update(_bn(f"{ours}bn", bn(1 if expands else 0)))
        for ours_se, theirs_se in (("se_reduce", "se/conv2d"), ("se_expand", "se/conv2d_1")):
            names[f"{ours}{ours_se}/kernel"] = theirs + theirs_se + "/kernel"
            names[f"{ours}{ours_se}/bias"] = theirs + theirs_se + "/bias"
        names[f"{ours}project_conv/kernel"] = theirs + ("conv2d_1" if expands else "conv2d") + "/kernel"
        names.update(_bn(f"{ours}project_bn", bn(2 if expands else 1)))
        i += 1
    names["top_conv/kernel"] = f"{scope}/head/conv2d/kernel"
    names.update(_bn("top_bn", f"{scope}/head/tpu_batch_normalization"))
    names["predictions/kernel"] = f"{scope}/head/dense/kernel"
    names["predictions/bias"] = f"{scope}/head/dense/bias"
    return names
