"""The original's SVHN run (google-research/noisystudent @aac52bf, local_scripts/svhn/): an
EfficientNet-B0 teacher labels `extra`, an EfficientNet-B0 student trains on `train` + the selection.

- data: `noisystudent ingest-svhn --mat_dir M --output_dir runs/svhn/data` (train less the 4,000 held out
  as `validation`, proc_svhn.py:164-170; test; extra).
- models: efficientnet-b0 -> efficientnet-b0 (run.sh:22, 37).
- train: the svhn preset (docs/recipes.md cites every value), trained offline from the selection as the
  loop does (run.sh itself trains online; `--mode online` with `train --preset svhn` is that run).
- predict: float32 (predict.sh:29 --use_bfloat16=False), full probability vectors, no crop (svhn).
- select: min_threshold 0.3, num_image 53,113 (filter_unlabel.sh:36, 39).
"""

from noisystudent import splits
from noisystudent.app.experiment import Experiment


def get_config() -> Experiment:
    return Experiment(data="runs/svhn/data", models=["efficientnet-b0", "efficientnet-b0"], preset="svhn",
                      labeled_split=splits.TRAIN, unlabeled_split=splits.EXTRA, eval_split=splits.TEST, ceiling=False,
                      title="Noisy Student on SVHN (the original's run)",
                      predict={"precision": "float32", "prob_format": "float32"},
                      select={"min_threshold": 0.3, "num_image": 53113})
