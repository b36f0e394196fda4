"""The split names the stages share, each defined once.

An ingested dataset dir holds LABELED, UNLABELED and TEST (SVHN and ImageNet keep their own names:
TRAIN, TEST, EXTRA, VALIDATION); predict writes PREDICTIONS; select writes PSEUDO_LABELED, the split
the student trains on (and predict --relabel writes it too).
"""

LABELED = "labeled"
UNLABELED = "unlabeled"
TEST = "test"
VALIDATION = "validation"
PREDICTIONS = "predictions"
TRAIN = "train"  # SVHN's and ImageNet's labeled split (ingest-svhn keeps it; the svhn, imagenet presets read it)
EXTRA = "extra"  # SVHN's 531,131 extra images: the unlabeled set of the original's SVHN run
PSEUDO_LABELED = TRAIN  # select's output: the student's train split, named as the original's
