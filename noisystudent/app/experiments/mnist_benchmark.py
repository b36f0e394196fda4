"""The MNIST benchmark of docs/benchmarks.md (10 labels per class): teacher cnn-small, then the larger
cnn-medium twice, 2,000 steps each, three seeds, each seed its own ingested split
(`noisystudent ingest-idx ... --labels_per_class 10 --seed S --output_dir runs/mnist/l10/data-seedS`)."""

from noisystudent.app.experiment import Experiment


def get_config() -> Experiment:
    return Experiment(data="runs/mnist/l10/data-seed{seed}", models=["cnn-small", "cnn-medium", "cnn-medium"],
                      preset="digits", seeds=[0, 1, 2], title="Noisy Student on MNIST, 10 labels per class",
                      train={"train_steps": 2000, "verbose": 0})
