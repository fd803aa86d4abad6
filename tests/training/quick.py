"""The smallest training run that still exercises every stage: one epoch of a tiny network, few importance
samples, no progress bar."""

QUICK = "--epochs 1 --base-channels 4 --hidden 32 --latent-dim 4 --iw-samples 8 --no-progress".split()
