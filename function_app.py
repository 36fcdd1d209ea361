"""The Functions entry point: builds the FunctionApp and registers the blueprints — nothing else."""

import azure.functions as func

from functions import ab_testing, approvals, dataset_uploads, events, health, journal, timers

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

for module in (ab_testing, approvals, dataset_uploads, events, health, journal, timers):
    app.register_functions(module.blueprint)
