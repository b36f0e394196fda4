"""Shipped experiments (noisystudent/app/experiment.py): `noisystudent loop|benchmark --config NAME`."""
