"""Training: device choice, on-device batches, checkpoints and the loop."""
