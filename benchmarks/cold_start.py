"""Cold-start cost of the app: import time of function_app.py next to `azure.functions` alone, measured in
the same run, in fresh interpreters (the median of several), and which heavy packages the import pulls in.

    python benchmarks/cold_start.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("promptflow", "azure.ai.ml", "azure.storage.blob", "azure.servicebus", "azure.identity", "openai")

PROBE = """
import sys, time, json
start = time.perf_counter()
import {module}
elapsed = time.perf_counter() - start
print(json.dumps({{"seconds": elapsed, "heavy": [name for name in {heavy!r} if name in sys.modules]}}))
"""


def measure(module: str, runs: int) -> tuple[float, list[str]]:
    samples, heavy = [], []
    for _ in range(runs):
        output = subprocess.run([sys.executable, "-c", PROBE.format(module=module, heavy=HEAVY)], cwd=ROOT,
                                check=True, capture_output=True, text=True).stdout
        result = json.loads(output.strip().splitlines()[-1])
        samples.append(result["seconds"])
        heavy = result["heavy"]
    return statistics.median(samples), heavy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    baseline, _ = measure("azure.functions", runs)
    app, heavy = measure("function_app", runs)
    print(f"import azure.functions      : {baseline * 1000:7.1f} ms (median of {runs})")
    print(f"import function_app         : {app * 1000:7.1f} ms (median of {runs})")
    print(f"ratio app / azure.functions : {app / baseline:7.2f}x")
    print(f"heavy packages imported     : {', '.join(heavy) or 'none'}")


if __name__ == "__main__":
    main()
