"""Select the use cases (flows/<name>/ with an experiment.yaml) a pipeline run must exercise.

Rules
- A change under flows/<name>/ selects that use case.
- A change to code every flow runs on (shared/, functions/, function_app.py, host.json,
  requirements*.txt) selects every use case.
- Anything else (docs, tests, infra, pipeline files) selects nothing.
- --all selects every use case (release pipeline).

The base of the comparison is the first parent of HEAD: for a pull-request build Azure Pipelines
checks out the merge commit, whose first parent is the target branch; for a push to main it is the
previous main commit. The checkout therefore needs fetchDepth >= 2.

Output: the JSON list on stdout and, with --ado-output, Azure Pipelines output variables
`json` (the list) and `count`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

EXPERIMENT_FILES = ("experiment.yaml", "experiment.yml")
SHARED_CODE_PREFIXES = ("shared/", "functions/")
SHARED_CODE_FILES = ("function_app.py", "host.json")


def discover_use_cases(flows_dir: Path) -> list[str]:
    """Every flows/<name>/ that holds an experiment definition, sorted."""
    if not flows_dir.is_dir():
        return []
    return sorted(
        child.name
        for child in flows_dir.iterdir()
        if child.is_dir() and any((child / name).is_file() for name in EXPERIMENT_FILES)
    )


def touches_shared_code(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return (
        path.startswith(SHARED_CODE_PREFIXES)
        or path in SHARED_CODE_FILES
        or ("/" not in path and name.startswith("requirements") and name.endswith(".txt"))
    )


def select_use_cases(
    changed_paths: Iterable[str], use_cases: list[str], flows_prefix: str = "flows/"
) -> list[str]:
    """Use cases affected by the changed paths (repository-relative, forward slashes)."""
    known = set(use_cases)
    selected: set[str] = set()
    for raw in changed_paths:
        path = raw.strip().replace("\\", "/")
        if not path:
            continue
        if touches_shared_code(path):
            return sorted(known)
        if path.startswith(flows_prefix):
            name = path[len(flows_prefix) :].split("/", 1)[0]
            if name in known:
                selected.add(name)
    return sorted(selected)


def changed_files(base: str) -> list[str]:
    out = subprocess.run(
        ["git", "diff", "--name-only", "--no-renames", base, "HEAD"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [line for line in out.splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows-dir", default="flows", help="directory that holds one folder per use case")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--base", help="git revision to compare HEAD with (e.g. HEAD^1)")
    group.add_argument("--all", action="store_true", help="select every use case")
    parser.add_argument("--ado-output", action="store_true", help="also set Azure Pipelines output variables")
    args = parser.parse_args(argv)

    flows_dir = Path(args.flows_dir)
    use_cases = discover_use_cases(flows_dir)
    if args.all:
        selected = use_cases
    else:
        prefix = flows_dir.as_posix().rstrip("/") + "/"
        selected = select_use_cases(changed_files(args.base), use_cases, flows_prefix=prefix)

    payload = json.dumps(selected)
    print(payload)
    print(
        f"selected {len(selected)} of {len(use_cases)} use case(s): {', '.join(selected) or '-'}",
        file=sys.stderr,
    )
    if args.ado_output:
        print(f"##vso[task.setvariable variable=json;isOutput=true]{payload}")
        print(f"##vso[task.setvariable variable=count;isOutput=true]{len(selected)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
