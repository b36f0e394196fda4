"""The paper's ImageNet run as the original's scripts give it (google-research/noisystudent @aac52bf,
local_scripts/imagenet/): an EfficientNet-B7 teacher, then EfficientNet-L2 students three times, each
labelling the unlabeled images for the next.

- data: ImageNet `train` as the labeled split, `validation` for evaluation, your unlabeled images
  (`noisystudent ingest-folder`) as `unlabeled`.
- train: the imagenet preset (B7 recipe, batch 4096, RandAugment 27, the original's ImageNet crops;
  docs/recipes.md cites every value), offline from each selection.
- predict: the original's center crop with bicubic resize (the preset's eval crop; predict.sh labels
  with the eval preprocessing), float32 (predict.sh:30 --use_bfloat16=False).
- select: min_threshold 0.3, num_image 130,000 per class (filter_unlabel.sh:36, 39).
"""

from noisystudent import splits
from noisystudent.app.experiment import Experiment


def get_config() -> Experiment:
    return Experiment(data="runs/imagenet/data", models=["efficientnet-b7"] + ["efficientnet-l2"] * 3,
                      preset="imagenet", labeled_split=splits.TRAIN, unlabeled_split=splits.UNLABELED, ceiling=False,
                      title="Noisy Student on ImageNet: B7 -> L2 x3",
                      predict={"precision": "float32", "prob_format": "float32"},
                      select={"min_threshold": 0.3, "num_image": 130000})
