#!/usr/bin/env bash
# Debian's Chromium, which tests/integration/test_playground.py drives with Playwright. `playwright install` is not
# used: it downloads a browser build of its own from outside the package registries. Does nothing when present.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
bash "$(dirname "$0")/apt-install.sh" chromium
/usr/bin/chromium --version
