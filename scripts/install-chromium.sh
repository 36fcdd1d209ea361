#!/usr/bin/env bash
# Headless Chromium for the browser tests (screenshots of summary.html). Idempotent: a no-op when present.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo -E"
fi
$SUDO apt-get update -qq
# No recommends (udev, mesa, printing); one font package so text renders the same on every agent.
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
command -v chromium >/dev/null
