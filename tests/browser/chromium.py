"""Headless Chromium for the browser tests: the Debian `chromium` package (scripts/install-chromium.sh), a fresh
profile per launch, and the marks that skip a test with the reason when it is absent."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)

MARKS = [
    pytest.mark.browser,
    pytest.mark.timeout(60),
    pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed: run scripts/install-chromium.sh"),
]


def run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path)  # a fresh profile per launch
    command = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
        f"--user-data-dir={profile}", *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=45, check=False)
