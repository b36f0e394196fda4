"""Shipped experiments (noisystudent/experiment.py): `noisystudent loop|benchmark --config NAME`."""
