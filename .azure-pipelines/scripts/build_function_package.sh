#!/usr/bin/env bash
# Build the Function App zip: app code + flows + dependencies vendored into
# .python_packages/lib/site-packages (the layout the Python worker loads), so the
# deployment needs no remote build. Run on a Linux x64 agent with Python 3.11 so
# compiled wheels match the Flex Consumption workers.
#
# usage: build_function_package.sh <output.zip>
set -euo pipefail

out="${1:?usage: build_function_package.sh <output.zip>}"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT

cd "$repo_root"
for item in function_app.py host.json requirements.txt; do
  [[ -f "$item" ]] || { echo "##vso[task.logissue type=error]missing $item"; exit 1; }
  cp "$item" "$stage/"
done
for dir in functions shared flows; do
  [[ -d "$dir" ]] && cp -R "$dir" "$stage/"
done

# uv resolves the same exact pins as pip would, in seconds instead of a minute or more.
python -m pip install --disable-pip-version-check --quiet "uv==0.13.9"
python -m uv pip install --quiet --python "$(command -v python)" \
  --target "$stage/.python_packages/lib/site-packages" -r requirements.txt

mkdir -p "$(dirname "$out")"
out_abs="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
rm -f "$out_abs"
(cd "$stage" && zip -q -r -X "$out_abs" . -x '*__pycache__*' '*.pyc' '.pytest_cache/*')
echo "built $out_abs ($(du -h "$out_abs" | cut -f1))"
