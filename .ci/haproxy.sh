#!/usr/bin/env bash
# Debian's HAProxy, the load balancer in front of tests/integration/test_fleet.py's three instances. Does nothing
# when present.
set -euo pipefail
if command -v haproxy >/dev/null; then
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends haproxy
haproxy -v | head -1
