"""The application: the `noisystudent` CLI and what only it runs (loop, demo, classify, features).

It sits on top of everything: it imports beam_pipelines/, trainer/, deploy/ and the library
modules of noisystudent/; nothing below imports it (tests/test_layers.py checks).
"""
