"""Helpers every stage uses: errors, the project's paths, progress bars, TensorFlow's runtime,
a job's outcome, redaction of secrets, signals, building parts from config, run names."""
