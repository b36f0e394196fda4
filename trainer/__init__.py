"""The Keras noisy-student trainer (teacher and student); entry point `python -m trainer.task`."""
