"""`python -m localstack up|down|status|keys`: manage the local stack (see localstack/stack.py)."""

from __future__ import annotations

import argparse
import json
import sys

from localstack.stack import LocalStack, StackError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localstack")
    parser.add_argument("command", choices=["up", "down", "status", "keys"])
    args = parser.parse_args(argv)
    stack = LocalStack()
    try:
        if args.command == "up":
            stack.up()
            print(f"local stack up: functions at {stack.base_url}/api, logs in {stack.state_dir}/")
        elif args.command == "down":
            stopped = stack.down()
            print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        elif args.command == "status":
            print(json.dumps(stack.status(), indent=2))
        else:
            from localstack.host.keys import read_host_keys

            print(json.dumps(read_host_keys(stack.storage_connection_string), indent=2))
    except StackError as problem:
        print(f"local stack: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
