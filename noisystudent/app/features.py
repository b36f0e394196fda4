"""`noisystudent features`: pooled embeddings of your images (see noisystudent/app/classify.py)."""

from noisystudent.app.classify import run_features as run

__all__ = ["run"]
