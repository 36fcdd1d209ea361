"""Service Bus trigger: every catalogue event on the events queue goes to its handler via the message bus."""

from __future__ import annotations

import azure.functions as func

from shared.bootstrap import get_application
from shared.settings import EVENTS_QUEUE_SETTING, SERVICEBUS_CONNECTION

blueprint = func.Blueprint()


@blueprint.service_bus_queue_trigger(arg_name="message", queue_name=f"%{EVENTS_QUEUE_SETTING}%",
                                     connection=SERVICEBUS_CONNECTION)
def route_event(message: func.ServiceBusMessage) -> None:
    # Exceptions propagate on purpose: the host abandons the message and Service Bus redelivers it,
    # dead-lettering after MaxDeliveryCount. Known-bad messages are dead-lettered inside, once.
    get_application().on_bus_message(
        message.get_body(),
        message_id=message.message_id or "",
        delivery_count=message.delivery_count,
        properties=dict(message.application_properties or {}),
        sequence_number=message.sequence_number,
        content_type=message.content_type,
        correlation_id=message.correlation_id,
        subject=message.subject or message.label,
    )
