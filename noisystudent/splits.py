"""The split names the stages share, each defined once.

An ingested dataset dir holds LABELED, UNLABELED and TEST (SVHN and ImageNet keep their own names:
train, test, extra, validation); predict writes PREDICTIONS; select writes PSEUDO_LABELED, the split
the student trains on (and predict --relabel writes it too).
"""

LABELED = "labeled"
UNLABELED = "unlabeled"
TEST = "test"
VALIDATION = "validation"
PREDICTIONS = "predictions"
PSEUDO_LABELED = "train"
