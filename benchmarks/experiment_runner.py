"""This project's experiment runner against the reference template's way of running the same experiment.

The experiment: flows/math_coding — 4 variant combinations (2 x 2, full cross-product) x 2 datasets (24 + 20
lines), the LLM answered by a scripted OpenAI-compatible server on loopback with a fixed delay per call.

- this project: PromptflowRunner.run_all — every flow loaded once in-process, all lines of all runs through one
  pool of `concurrency` workers;
- the reference's way: one `pf.run` per variant combination and dataset, one after another (each run starts its
  own executor processes), with the same number of workers per run.

Prints wall times, the ratio between them, and the ratio of this project's time to the ideal
(LLM calls x delay / concurrency). Both ways import promptflow before their clock starts (a warm Functions worker
has it loaded); everything per run — loading flows, starting executors — is inside the timing. This project's
way is also timed a second time in the same process (a worker that has run lines before), printed beside the
first, cold figure.

    python benchmarks/experiment_runner.py [--delay 0.2] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from localstack.llm.scripted import scripted_llm  # noqa: E402 - after the path set-up above
from shared.experiments.config import load_experiment  # noqa: E402
from shared.experiments.planning import run_spec, standard_stage  # noqa: E402
from shared.experiments.runner import ConnectionSpec, ExecutionLimits  # noqa: E402
from shared.experiments.variants import (  # noqa: E402
    Combination,
    discover_variants,
    expand,
    flow_inputs,
    materialize,
)

USE_CASE = ROOT / "flows" / "math_coding"


def plan(scratch: Path):
    """The experiment's standard stage as the service plans it, each run whole (all its lines) in one RunSpec."""
    from shared.experiments.datasets import parse_jsonl

    config = load_experiment(USE_CASE, "local")
    combinations = expand(discover_variants(config.flow_dir), config.variants, config.hyperparameters)
    rows = {d.name: parse_jsonl(d.local_path.read_bytes(), d.name) for d in config.datasets}
    stage, mapped = standard_stage(config, "bench", combinations, rows, flow_inputs(config.flow_dir))
    flow_dirs: dict[str, Path] = {}
    specs = []
    for run in stage.runs:
        combination = Combination(variant=run.variant, hyperparameters=run.hyperparameters)
        if combination.id not in flow_dirs:
            flow_dirs[combination.id] = materialize(config.flow_dir, combination, scratch / combination.id)
        rows_by_line_number = dict(enumerate(mapped[run.dataset]))
        specs.append(run_spec(run, flow_dirs[combination.id], rows_by_line_number, run.line_numbers))
    return config, specs


def project_way(specs: list, base_url: str, concurrency: int) -> float:
    import promptflow.executor  # noqa: F401 - the one-time import is outside the timing, as in the reference way

    from shared.adapters.promptflow_runner import PromptflowRunner

    connection = ConnectionSpec(name="aoai", type="OpenAIConnection", values={"base_url": base_url},
                                secrets={"api_key": "bench"})
    started = time.perf_counter()
    results = PromptflowRunner().run_all(specs, [connection], ExecutionLimits(concurrency=concurrency))
    elapsed = time.perf_counter() - started
    assert all(r.status == "completed" and r.failed_lines == 0 for r in results), [r.error for r in results]
    return elapsed


def reference_way(specs: list, base_url: str, concurrency: int, home: Path) -> float:
    """One pf.run per combination and dataset, sequentially, through the promptflow SDK's local client."""
    os.environ["PF_WORKER_COUNT"] = str(concurrency)
    os.environ["PYTHON_KEYRING_BACKEND"] = "keyrings.alt.file.PlaintextKeyring"
    os.environ["PF_HOME_DIRECTORY"] = str(home)
    home.mkdir(parents=True, exist_ok=True)
    from promptflow._sdk._configuration import Configuration
    from promptflow.client import PFClient
    from promptflow.connections import OpenAIConnection

    # The SDK's telemetry would retry an internet endpoint after every run here, and its trace service would outlive
    # the benchmark: both off, so neither costs anything or lingers.
    Configuration.get_instance().set_config("telemetry.enabled", False)
    Configuration.get_instance().set_config("trace.destination", "none")
    client = PFClient()
    client.connections.create_or_update(OpenAIConnection(name="aoai", api_key="bench", base_url=base_url))
    started = time.perf_counter()
    for spec in specs:
        data = home / f"{spec.run_id}.jsonl"
        data.write_text("".join(json.dumps(row) + "\n" for row in spec.rows))
        run = client.run(flow=str(spec.flow_dir), data=str(data), column_mapping={"question": "${data.question}"},
                         stream=False)
        assert run.status == "Completed", run.status
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, scripted_llm(delay_seconds=args.delay) as llm:
        scratch = Path(tmp)
        config, specs = plan(scratch / "flows")
        lines = sum(len(spec.rows) for spec in specs)
        ideal = lines * args.delay / args.concurrency  # one LLM call per line in this flow
        ours = project_way(specs, llm.base_url, args.concurrency)
        ours_calls = llm.calls
        # The same experiment again in this process: a warm Function worker that has run lines before (the lazy
        # imports and caches of the first line are paid); printed beside the cold figure, never instead of it.
        warm = project_way(specs, llm.base_url, args.concurrency)
        llm.reset_stats()
        theirs = reference_way(specs, llm.base_url, args.concurrency, scratch / "pf-home")
    print(f"experiment: {len(specs)} runs ({len(specs) // len(config.datasets)} combinations x "
          f"{len(config.datasets)} datasets), {lines} lines, {ours_calls} LLM calls, "
          f"delay {args.delay * 1000:.0f} ms, concurrency {args.concurrency}")
    print(f"ideal (calls x delay / concurrency) : {ideal:7.2f} s")
    print(f"this project (one pool, in-process)  : {ours:7.2f} s   (warm worker: {warm:.2f} s)")
    print(f"reference way (sequential pf.run)    : {theirs:7.2f} s")
    print(f"speed-up over the reference way      : {theirs / ours:7.2f}x   (target >= 8x)")
    print(f"this project / ideal                 : {ours / ideal:7.2f}x   (warm worker: {warm / ideal:.2f}x; "
          f"target <= 1.3x)")


if __name__ == "__main__":
    main()
