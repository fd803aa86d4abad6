#!/usr/bin/env bash
# Debian's Chromium, which tests/integration/test_playground.py drives with Playwright. `playwright install` is not
# used: it downloads a browser build of its own from outside the package registries. Does nothing when present.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends chromium
/usr/bin/chromium --version
