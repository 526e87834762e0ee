"""xai-lab: train a CNN on MNIST and kin, explain it with iNNvestigate, track it in MLflow."""
