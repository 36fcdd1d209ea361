"""Timer trigger slot: a heartbeat every minute (approval expiry joins this family later)."""

from __future__ import annotations

import azure.functions as func

from shared.bootstrap import get_application

blueprint = func.Blueprint()


@blueprint.timer_trigger(arg_name="timer", schedule="%HEARTBEAT_SCHEDULE%", run_on_startup=False)
def heartbeat(timer: func.TimerRequest) -> None:
    get_application().record_heartbeat()
