#!/usr/bin/env bash
# `bash .ci/apt-install.sh PACKAGE...`: Debian packages the tests need, installed quietly (with sudo when not root).
set -euo pipefail
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "$@"
