"""Memory of dataset intake: peak RSS while one uploaded dataset is hashed, checked line by line, reported and
registered — the dataset.uploaded handler run through `Application.on_bus_message`, as the Functions host runs
it, on real Azurite storage and the blob-storage registry — for 10 MB, 100 MB and 1 GB datasets.

Each size runs in a fresh interpreter (so one size's garbage cannot hide another's peak), which prints its RSS
after start-up and its peak (`ru_maxrss`); the ratio of each peak to the 10 MB run's peak, measured in the same
run, is the figure (target: the same within a few MB). The datasets are generated on the fly into a temporary
folder (JSONL rows of about 500 bytes), uploaded to an Azurite started for the run, and deleted afterwards.

    python benchmarks/intake_memory.py [--sizes-mb 10,100,1024]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from localstack.stack import LocalStack, Ports  # noqa: E402 - after the path set-up above

USE_CASE = "math_coding"
MB = 1024 * 1024

PROBE = """
import json, resource, sys, time
from azure.storage.blob import BlobServiceClient
from shared.adapters.azure_blob import AzureBlobStore
from shared.adapters.clock import SystemClock
from shared.adapters.promptflow_runner import PromptflowRunner
from shared.application import Application
from shared.bootstrap import build_deployments
from shared.events.codec import encode
from shared.registry.blob_registry import BlobRegistry
from shared.services.intake import dataset_uploaded_event
from shared.settings import Settings

class Recorder:
    def __init__(self): self.sent = []
    def publish(self, events): self.sent.extend(events)

def rss_kb():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS:"))

connection, blob_name = sys.argv[1], sys.argv[2]
blobs = AzureBlobStore(BlobServiceClient.from_connection_string(connection))
clock, settings, bus = SystemClock(), Settings(), Recorder()
app = Application(settings, blobs, bus, clock, PromptflowRunner(), BlobRegistry(blobs, clock),
                  build_deployments(settings, blobs, clock))
info = blobs.info("datasets", blob_name)
event = dataset_uploaded_event("datasets", blob_name, info.size, info.etag)
before, start = rss_kb(), time.perf_counter()
outcome = app.on_bus_message(encode(event).body, message_id=event.id, delivery_count=1, properties={})
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"status": outcome.status, "follow_ups": [e.type for e in bus.sent],
                  "before_kb": before, "peak_kb": peak, "seconds": seconds}))
"""


def write_dataset(path: Path, size: int, seed: int = 7) -> int:
    """JSONL rows of about 500 bytes up to `size` bytes; returns the number of rows."""
    rng = random.Random(seed)
    filler = "".join(rng.choice("abcdefghij klmnopqrstuvwxyz") for _ in range(4096))
    rows, written = 0, 0
    with path.open("wb") as handle:
        while written < size:
            a, b = rng.randint(0, 10**6), rng.randint(0, 10**6)
            start = rng.randint(0, 3600)
            line = json.dumps({"question": f"{a}+{b}", "answer": str(a + b), "context": filler[start:start + 440]})
            data = line.encode() + b"\n"
            handle.write(data)
            written += len(data)
            rows += 1
    return rows


def measure(stack: LocalStack, folder: Path, size_mb: int) -> dict[str, object]:
    from azure.storage.blob import BlobServiceClient

    path = folder / f"bench_{size_mb}mb.jsonl"
    rows = write_dataset(path, size_mb * MB)
    blob_name = f"{USE_CASE}/intake_bench_{size_mb}mb.jsonl"
    service = BlobServiceClient.from_connection_string(stack.storage_connection_string)
    with path.open("rb") as handle:
        service.get_blob_client("datasets", blob_name).upload_blob(handle, overwrite=True, max_concurrency=2)
    path.unlink()
    output = subprocess.run([sys.executable, "-c", PROBE, stack.storage_connection_string, blob_name], cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout
    result = json.loads(output.strip().splitlines()[-1])
    if result["status"] != "handled" or result["follow_ups"] != ["data.registered"]:
        raise RuntimeError(f"{size_mb} MB: the upload was not checked and registered: {result}")
    return {"size_mb": size_mb, "rows": rows, **result}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes-mb", default="10,100,1024")
    sizes = [int(size) for size in parser.parse_args().sizes_mb.split(",")]
    with tempfile.TemporaryDirectory(prefix="intake-memory-") as temp:
        stack = LocalStack(state_dir=Path(temp) / "stack", ports=Ports.free(), with_model=False)
        try:
            stack.start_azurite()
            results = [measure(stack, Path(temp), size) for size in sizes]
        finally:
            stack.down()
    baseline = results[0]["peak_kb"]
    ratio_header = f"peak / {sizes[0]} MB"
    print(f"{'dataset':>9} {'rows':>10} {'RSS before':>11} {'peak RSS':>9} {'growth':>8} {ratio_header:>12} "
          f"{'intake':>9}")
    for result in results:
        before, peak = int(result["before_kb"]), int(result["peak_kb"])
        print(f"{result['size_mb']:>6} MB {result['rows']:>10,} {before / 1024:>8.1f} MB {peak / 1024:>6.1f} MB "
              f"{(peak - before) / 1024:>5.1f} MB {peak / int(baseline):>11.3f}x {float(result['seconds']):>7.1f} s")


if __name__ == "__main__":
    main()
