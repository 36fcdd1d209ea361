"""Timer triggers: a heartbeat, and the production monitor (each use case's `monitoring:` schedule says when it
looks; this timer only has to tick at least as often)."""

from __future__ import annotations

import azure.functions as func

from shared.bootstrap import get_application

blueprint = func.Blueprint()


@blueprint.timer_trigger(arg_name="timer", schedule="%HEARTBEAT_SCHEDULE%", run_on_startup=False)
def heartbeat(timer: func.TimerRequest) -> None:
    get_application().record_heartbeat()


@blueprint.timer_trigger(arg_name="timer", schedule="%MONITORING_SCHEDULE%", run_on_startup=False)
def production_monitor(timer: func.TimerRequest) -> None:
    get_application().monitor_production()
