"""`noisystudent features`: pooled embeddings of your images (see noisystudent/classify.py)."""

from noisystudent.classify import run_features as run

__all__ = ["run"]
