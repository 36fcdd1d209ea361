"""Turn `terraform output -json` (stdin) into Azure Pipelines output variables.

Only the outputs later steps need are exported; a missing one fails the step, so a renamed
Terraform output cannot silently leave the pipeline talking to nothing.
"""

from __future__ import annotations

import json
import sys

# Terraform output name -> pipeline variable name (read as $(tfOutputs.<name>) in the same job,
# dependencies.<job>.outputs['<job>.tfOutputs.<name>'] in later jobs).
EXPORTS = {
    "resource_group_name": "resourceGroupName",
    "function_app_name": "functionAppName",
    "function_app_default_hostname": "functionAppHostname",
    "servicebus_namespace_fqdn": "serviceBusFqdn",
    "events_queue_name": "eventsQueue",
    "data_storage_blob_endpoint": "dataBlobEndpoint",
    "blob_event_subscription_enabled": "blobEventsEnabled",
}


def main() -> int:
    outputs = json.load(sys.stdin)
    missing = sorted(name for name in EXPORTS if name not in outputs)
    if missing:
        print(f"##vso[task.logissue type=error]terraform outputs missing: {', '.join(missing)}")
        return 1
    for tf_name, var_name in EXPORTS.items():
        value = outputs[tf_name]["value"]
        if isinstance(value, bool):
            value = str(value).lower()
        print(f"##vso[task.setvariable variable={var_name};isOutput=true]{value}")
        print(f"{var_name} = {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
