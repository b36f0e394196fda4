"""Small files in the real SVHN formats: the original .mat files and a prepared tfds data_dir."""

import os
from unittest import mock

import numpy as np
import scipy.io


def write_svhn_mat(directory, sizes=(("train", 60), ("test", 20), ("extra", 30)), seed=0,
                   compress=False):
    """Write <split>_32x32.mat files shaped like the originals; returns {split: (X, y)}."""
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    data = {}
    for split, n in sizes:
        x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
        y = rng.integers(1, 11, size=(n, 1)).astype(np.uint8)
        y[0] = 10  # make sure digit 0 (stored as 10) is present
        scipy.io.savemat(os.path.join(directory, f"{split}_32x32.mat"), {"X": x, "y": y},
                         do_compression=compress)
        data[split] = (x, y)
    return data


def prepare_tfds_svhn(mat_dir, data_dir):
    """Run tfds' own svhn_cropped builder over local .mat files instead of the download."""
    import tensorflow_datasets as tfds

    def local_download(self, urls):
        return {k: os.path.join(mat_dir, os.path.basename(v)) for k, v in urls.items()}

    with mock.patch.object(tfds.download.DownloadManager, "download", local_download):
        tfds.builder("svhn_cropped", data_dir=str(data_dir)).download_and_prepare()
