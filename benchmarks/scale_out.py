"""Scale-out: one experiment through the real local stack with 1 Functions host process, then with 2.

The experiment: flows/math_coding copied into a temporary flows folder (GENAIOPS_FLOWS_DIR) with a temperature
grid of 4 values added to its experiment.yaml — 2 x 2 variants x 4 = 16 combinations x 2 datasets (24 + 20
lines): 32 standard runs, 704 LLM calls, cut into work items of 16 lines (`experiment.item_requested`), then the
evaluation items. The LLM is the scripted OpenAI-compatible server with a fixed delay per call, so the work is
latency-bound like a real LLM's.

Fairness: each configuration gets a fresh stack (its own Azurite, broker, state folder and ports — no
messages, blobs or caches left over from the other configuration), and its host processes are all started
before anything is published. Each stack first runs a small warm-up experiment (one variant, one dataset, one
line per item, so every host takes some of it) and waits for its journal to go quiet: the measured experiment
then meets warm hosts (promptflow imported), as a scaled-out Function app in steady state does. The wall time
is from the publish of `experiment.requested` to the `evaluation.completed` in the journal (its `occurred_at`;
same machine clock).

Printed per delay: both wall times, the ratio (target >= 1.7x), which worker took how many standard items, the
peak of LLM calls in flight, and CPU during the measurement (the whole machine's busy share, and the CPU
seconds of the hosts, Azurite, the broker, this process with the LLM server, and every other process on the
machine) — to tell a latency-bound run from a CPU-bound one, and to see when someone else's load skews it.

Every wait is bounded (--timeout per experiment) and each stack is stopped at the end, also on failure.

    python benchmarks/scale_out.py [--delays 0.2,5.0] [--timeout 600]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from localstack.llm.scripted import ScriptedLLM, scripted_llm  # noqa: E402 - after the path set-up above
from localstack.stack import LocalStack, Ports, free_port  # noqa: E402

USE_CASE = "math_coding"
WARMUP = "warmup"
TEMPERATURES = [0.0, 0.3, 0.6, 0.9]  # x 2 x 2 variants = 16 combinations
OUTCOMES = ("evaluation.completed", "experiment.failed")


class BenchmarkError(RuntimeError):
    pass


def flows_folder(target: Path) -> Path:
    """math_coding with a temperature grid (16 combinations), and a small warm-up use case beside it."""
    source = ROOT / "flows" / USE_CASE
    shutil.copytree(source, target / USE_CASE, ignore=shutil.ignore_patterns("__pycache__", ".promptflow"))
    config_file = target / USE_CASE / "experiment.yaml"
    config = yaml.safe_load(config_file.read_text())
    config["hyperparameters"] = {"temperature": TEMPERATURES}
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))

    shutil.copytree(target / USE_CASE, target / WARMUP)
    warm_file = target / WARMUP / "experiment.yaml"
    warm = yaml.safe_load(warm_file.read_text())
    warm.update(name=WARMUP, variants={"mode": "defaults"}, hyperparameters={},
                datasets=[d for d in warm["datasets"] if d["name"] == "math_test"],
                execution={**warm.get("execution", {}), "lines_per_item": 1})
    for evaluator in warm["evaluators"]:
        evaluator["datasets"] = [d for d in evaluator["datasets"] if d["reference"] == "math_test"]
    warm_file.write_text(yaml.safe_dump(warm, sort_keys=False))
    return target


# --- the bus and the journal -----------------------------------------------------------------------------------


def publish(stack: LocalStack, use_case: str) -> tuple[str, datetime]:
    from azure.servicebus import ServiceBusClient

    from shared.adapters.servicebus import ServiceBusPublisher
    from shared.events import ExperimentRequested

    event = ExperimentRequested.create({"use_case": use_case, "environment": "local"},
                                       correlation_id=f"scale-out-{use_case}-{time.time_ns()}", source="benchmark")
    publisher = ServiceBusPublisher(ServiceBusClient.from_connection_string(stack.servicebus_connection_string),
                                    stack.settings()["EVENTS_QUEUE"])
    try:
        published = datetime.now(UTC)
        publisher.publish([event])
    finally:
        publisher.close()
    return event.correlation_id, published


def blobs(stack: LocalStack) -> Any:
    from azure.storage.blob import BlobServiceClient

    from shared.adapters.azure_blob import AzureBlobStore

    return AzureBlobStore(BlobServiceClient.from_connection_string(stack.storage_connection_string))


def journal_names(store: Any, correlation_id: str) -> list[str]:
    from shared.blob_layout import AUDIT, safe_segment

    return sorted(info.name for info in store.list(AUDIT, prefix=f"{safe_segment(correlation_id)}/"))


def read_event(store: Any, name: str) -> Any:
    from shared.blob_layout import AUDIT
    from shared.events.codec import decode

    return decode(store.read(AUDIT, name)[0])


def wait_outcome(stack: LocalStack, correlation_id: str, timeout: float) -> Any:
    """The experiment's evaluation.completed (or experiment.failed) from the journal; only names are listed while
    waiting, so the polling costs Azurite little."""
    store = blobs(stack)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [name for name in journal_names(store, correlation_id) if any(f"-{t}-" in name for t in OUTCOMES)]
        if done:
            event = read_event(store, done[0])
            if event.type != "evaluation.completed":
                raise BenchmarkError(f"{correlation_id}: {event.type}: {event.payload}")
            return event
        time.sleep(0.5)
    raise BenchmarkError(f"{correlation_id}: no outcome within {timeout:.0f} s (logs in {stack.state_dir})")


def wait_quiet(stack: LocalStack, correlation_id: str, quiet: float = 4.0, timeout: float = 60.0) -> None:
    """Until the journal has had no new event for `quiet` seconds (the gate and registration after the
    warm-up's evaluation), at most `timeout` seconds."""
    store = blobs(stack)
    deadline, count, changed = time.monotonic() + timeout, -1, time.monotonic()
    while time.monotonic() < deadline:
        now = len(journal_names(store, correlation_id))
        if now != count:
            count, changed = now, time.monotonic()
        elif time.monotonic() - changed >= quiet:
            return
        time.sleep(0.5)


def standard_seconds(stack: LocalStack, correlation_id: str, published: datetime) -> float:
    store = blobs(stack)
    first = next(name for name in journal_names(store, correlation_id) if "-experiment.stage_completed-" in name)
    return (read_event(store, first).occurred_at - published).total_seconds()


def standard_workers(stack: LocalStack, use_case: str, correlation_id: str) -> Counter[str]:
    from shared.adapters.blob_experiment_store import BlobExperimentStore

    store = blobs(stack)
    planned = next(name for name in journal_names(store, correlation_id) if "-experiment.progressed-" in name)
    experiment_id = str(read_event(store, planned).payload.experiment_id)
    outcomes = BlobExperimentStore(store).item_outcomes(use_case, experiment_id, "standard")
    return Counter(outcome.worker for outcome in outcomes)


# --- CPU -----------------------------------------------------------------------------------------------------


def process_cpu(pid: int | None, children: bool = True) -> float:
    """CPU seconds (user + system) of a process and (unless told not to) its children, 0 when it is gone."""
    if pid is None:
        return 0.0
    try:
        process = psutil.Process(pid)
        total = 0.0
        for proc in [process, *(process.children(recursive=True) if children else [])]:
            times = proc.cpu_times()
            total += times.user + times.system
        return total
    except psutil.Error:
        return 0.0


@dataclass
class CpuWindow:
    names: dict[str, int | None]
    started: dict[str, float]
    machine: Any
    clock: float

    @classmethod
    def open(cls, stack: LocalStack, hosts: list[str]) -> CpuWindow:
        names = {name: stack._running_pid(name) for name in (*hosts, "azurite", "broker")}
        started = {name: process_cpu(pid) for name, pid in names.items()}
        started["benchmark+LLM"] = process_cpu(os.getpid(), children=False)
        return cls(names, started, psutil.cpu_times(), time.monotonic())

    def close(self) -> str:
        wall = time.monotonic() - self.clock
        after = psutil.cpu_times()
        total = sum(after) - sum(self.machine)
        idle = (after.idle + after.iowait) - (self.machine.idle + self.machine.iowait)
        used = {name: process_cpu(pid) - self.started[name] for name, pid in self.names.items()}
        used["benchmark+LLM"] = process_cpu(os.getpid(), children=False) - self.started["benchmark+LLM"]
        # Whatever else ran on the machine meanwhile (other people's processes on a shared machine).
        used["other processes"] = max(0.0, total - idle - sum(used.values()))
        parts = ", ".join(f"{name} {seconds:.1f} s ({seconds / wall:.0%})" for name, seconds in used.items())
        return (f"machine {1 - idle / total if total else 0:.0%} busy of {psutil.cpu_count()} cores; "
                f"CPU seconds (share of one core): {parts}")


# --- one configuration ---------------------------------------------------------------------------------------


@dataclass
class Measurement:
    hosts: int
    seconds: float
    standard_seconds: float  # publish -> the standard stage's experiment.stage_completed (LLM lines)
    workers: Counter[str]
    peak_llm: int
    llm_calls: int
    cpu: str


def measure(hosts: int, flows: Path, llm: ScriptedLLM, timeout: float) -> Measurement:
    with tempfile.TemporaryDirectory(prefix=f"scale-out-{hosts}-") as state:
        stack = LocalStack(state_dir=Path(state), ports=Ports.free(), with_model=False, extra_settings={
            "AOAI_BASE_URL": llm.base_url, "AOAI_API_KEY": "not-a-real-key", "GENAIOPS_FLOWS_DIR": str(flows)})
        try:
            stack.up()
            names = ["host"]
            for number in range(2, hosts + 1):
                names.append(f"host-{number}")
                stack.start_host(names[-1], free_port())
            warmup, _ = publish(stack, WARMUP)
            wait_outcome(stack, warmup, timeout)
            wait_quiet(stack, warmup)
            warm_workers = standard_workers(stack, WARMUP, warmup)
            if len(warm_workers) < hosts:
                print(f"  note: only {len(warm_workers)} of {hosts} hosts took warm-up items", flush=True)
            llm.reset_stats()
            window = CpuWindow.open(stack, names)
            correlation_id, published = publish(stack, USE_CASE)
            outcome = wait_outcome(stack, correlation_id, timeout)
            cpu = window.close()
            seconds = (outcome.occurred_at - published).total_seconds()
            return Measurement(hosts, seconds, standard_seconds(stack, correlation_id, published),
                               standard_workers(stack, USE_CASE, correlation_id), llm.peak_concurrency, llm.calls,
                               cpu)
        finally:
            stack.down()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delays", default="0.2,5.0", help="LLM delays in seconds, comma-separated")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for one experiment")
    args = parser.parse_args()
    # `kill` (or make being stopped) ends the run through the finally blocks: the stacks are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="scale-out-flows-") as tmp:
        flows = flows_folder(Path(tmp))
        for delay in (float(value) for value in args.delays.split(",")):
            with scripted_llm(delay_seconds=delay) as llm:
                one = measure(1, flows, llm, args.timeout)
                two = measure(2, flows, llm, args.timeout)
            print(f"experiment: 16 combinations x 2 datasets, {one.llm_calls} LLM calls, delay {delay * 1000:.0f} ms,"
                  f" fresh stack per configuration, warm hosts")
            for result in (one, two):
                items = ", ".join(f"{count}" for _, count in sorted(result.workers.items()))
                evaluation = result.seconds - result.standard_seconds
                print(f"  {result.hosts} host(s): {result.seconds:7.2f} s (standard stage {result.standard_seconds:.2f}"
                      f" s, evaluation {evaluation:.2f} s)  standard items per host [{items}], "
                      f"peak LLM calls in flight {result.peak_llm}")
                print(f"      CPU: {result.cpu}")
            print(f"  speed-up 2 hosts / 1 host : {one.seconds / two.seconds:5.2f}x   (target >= 1.7x); standard stage "
                  f"alone {one.standard_seconds / two.standard_seconds:.2f}x", flush=True)


if __name__ == "__main__":
    main()
