#!/usr/bin/env bash
# Debian's HAProxy, the load balancer in front of tests/integration/test_fleet.py's three instances. Does nothing
# when present.
set -euo pipefail
if command -v haproxy >/dev/null; then
    exit 0
fi
bash "$(dirname "$0")/apt-install.sh" haproxy
haproxy -v | head -1
