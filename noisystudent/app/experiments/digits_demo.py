"""The demo (`noisystudent demo`): a cnn-small teacher and two cnn-small students on scikit-learn's
bundled digits, 10 labels per class, three seeds, each with its own labeled subset under the run dir."""

from noisystudent.app.experiment import Experiment


def get_config() -> Experiment:
    return Experiment(data="{run_dir}/seed{seed}/data", models=["cnn-small"] * 3, preset="digits",
                      seeds=[0, 1, 2], title="Noisy Student on digits", train={"verbose": 0})
