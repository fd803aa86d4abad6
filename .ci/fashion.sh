#!/usr/bin/env bash
# Debian's Fashion-MNIST (dataset-fashion-mnist: the IDX files under /usr/share/datasets/fashion-mnist/), the data of
# `--dataset fashion`, of the shipped fashion-cvae's tests and of the digit models' out-of-distribution tests.
# Does nothing when present.
set -euo pipefail
if [ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]; then
    exit 0
fi
bash "$(dirname "$0")/apt-install.sh" dataset-fashion-mnist
ls /usr/share/datasets/fashion-mnist/
