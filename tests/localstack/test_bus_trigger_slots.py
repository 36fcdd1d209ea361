"""The local host's Service Bus trigger keeps each of its maxConcurrentCalls slots busy on its own.

Real parts only: the local broker, the azure-servicebus SDK, and a function app loaded by the host's loader.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from localstack.host.bus_trigger import ServiceBusTriggerListener
from localstack.host.loader import FunctionSpec, describe_functions, load_function_app
from localstack.servicebus_broker import Broker, running_broker

pytestmark = pytest.mark.timeout(60)

SLOW_SECONDS = 6.0
SLOTS = 4

FUNCTION_APP = '''
import threading
import time

import azure.functions as func

app = func.FunctionApp()
EVENTS = []            # (body, delivery count, started, finished, succeeded)
RUNNING = [0, 0]       # [now, most at once]
_LOCK = threading.Lock()


@app.service_bus_queue_trigger(arg_name="msg", queue_name="{queue}", connection="ServiceBusConnection")
def slots(msg: func.ServiceBusMessage) -> None:
    body = msg.get_body().decode()
    with _LOCK:
        RUNNING[0] += 1
        RUNNING[1] = max(RUNNING)
    started = time.time()
    try:
        if body == "slow":
            time.sleep({slow})
        elif body == "boom" and msg.delivery_count == 1:
            raise RuntimeError("first delivery fails")
        else:
            time.sleep(0.2)  # short, but long enough that the fast messages overlap and fill the slots
    except Exception:
        EVENTS.append((body, msg.delivery_count, started, time.time(), False))
        raise
    finally:
        with _LOCK:
            RUNNING[0] -= 1
    EVENTS.append((body, msg.delivery_count, started, time.time(), True))
'''



def load_spec(tmp_path: Path, queue: str) -> tuple[FunctionSpec, dict[str, Any]]:
    # A unique module name: the loader registers the module in sys.modules under the file's stem.
    script = tmp_path / f"slots_app_{uuid.uuid4().hex[:8]}.py"
    script.write_text(FUNCTION_APP.replace("{queue}", queue).replace("{slow}", str(SLOW_SECONDS)))
    [spec] = describe_functions(load_function_app(script))
    return spec, spec.user_function.__globals__


def run_listener(spec: FunctionSpec, broker: Broker) -> tuple[threading.Event, threading.Thread]:
    host_config = {"extensions": {"serviceBus": {"maxConcurrentCalls": SLOTS}}}
    listener = ServiceBusTriggerListener(
        spec, lambda: ServiceBusClient.from_connection_string(broker.connection_string), host_config)
    stop = threading.Event()
    thread = threading.Thread(target=listener.run, args=(stop,), name="listener", daemon=True)
    thread.start()
    return stop, thread


def wait_for(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def test_a_slow_message_holds_one_slot_and_the_others_keep_receiving(broker: Broker, tmp_path: Path):
    queue = f"slots-{uuid.uuid4().hex[:8]}"
    spec, module = load_spec(tmp_path, queue)
    events: list[tuple[str, int, float, float, bool]] = module["EVENTS"]
    stop, thread = run_listener(spec, broker)
    try:
        with (
            ServiceBusClient.from_connection_string(broker.connection_string) as client,
            client.get_queue_sender(queue, keep_alive=None) as sender,
        ):
            sender.send_messages(ServiceBusMessage("slow"))
            # the slow one is running before the fast ones exist: nothing can be received with it
            assert wait_for(lambda: module["RUNNING"][0] == 1, timeout=10)
            sender.send_messages([ServiceBusMessage(f"fast-{i}") for i in range(5)])
            sent_fast = time.time()
        assert wait_for(lambda: len(events) == 6, timeout=SLOW_SECONDS + 10)
        assert wait_for(lambda: broker.queue(queue).message_count == 0, timeout=5)  # settled
    finally:
        stop.set()
        thread.join(15)
    assert not thread.is_alive()

    [slow] = [event for event in events if event[0] == "slow"]
    fast = [event for event in events if event[0] != "slow"]
    assert sorted(event[0] for event in fast) == [f"fast-{i}" for i in range(5)]
    assert all(event[4] for event in events)
    last_fast_done = max(event[3] for event in fast)
    # every fast message was handled while the slow one was still running
    assert last_fast_done < slow[3]
    assert last_fast_done - sent_fast < SLOW_SECONDS / 2
    assert 2 <= module["RUNNING"][1] <= SLOTS  # overlapping, never more than maxConcurrentCalls
    assert broker.queue(queue).message_count == 0
    assert broker.queue(f"{queue}/$DeadLetterQueue").message_count == 0
    print(f"\nslow ran {slow[3] - slow[2]:.2f}s; 5 fast done {last_fast_done - sent_fast:.2f}s after sending, "
          f"{slow[3] - last_fast_done:.2f}s before the slow one ended; most at once {module['RUNNING'][1]}")


def test_a_failed_invocation_is_abandoned_and_redelivered_and_stop_waits_for_running_ones(
    broker: Broker, tmp_path: Path
):
    queue = f"slots-{uuid.uuid4().hex[:8]}"
    spec, module = load_spec(tmp_path, queue)
    events: list[tuple[str, int, float, float, bool]] = module["EVENTS"]
    stop, thread = run_listener(spec, broker)
    with (
        ServiceBusClient.from_connection_string(broker.connection_string) as client,
        client.get_queue_sender(queue, keep_alive=None) as sender,
    ):
        sender.send_messages([ServiceBusMessage("boom"), ServiceBusMessage("slow")])
    assert wait_for(lambda: [e[:2] for e in events if e[0] == "boom"] == [("boom", 1), ("boom", 2)], timeout=10)
    assert wait_for(lambda: module["RUNNING"][0] == 1, timeout=5)  # the slow one is still running

    stop.set()  # stop while "slow" runs: the listener waits for it and completes its message
    thread.join(SLOW_SECONDS + 10)
    assert not thread.is_alive()
    assert [(e[0], e[4]) for e in events] == [("boom", False), ("boom", True), ("slow", True)]
    assert wait_for(lambda: broker.queue(queue).message_count == 0, timeout=5)
    assert broker.queue(f"{queue}/$DeadLetterQueue").message_count == 0


def test_locks_are_renewed_while_a_function_outlives_them(tmp_path: Path):
    """A 2 s lock, a 6 s function and a stream of other messages received meanwhile: the slow message is renewed
    (on the receiver's thread, between receives) and handled once, not redelivered when its first lock lapses."""
    queue = f"slots-{uuid.uuid4().hex[:8]}"
    spec, module = load_spec(tmp_path, queue)
    events: list[tuple[str, int, float, float, bool]] = module["EVENTS"]
    with running_broker(port=0, lock_duration=2) as short_locks:
        stop, thread = run_listener(spec, short_locks)
        try:
            with (
                ServiceBusClient.from_connection_string(short_locks.connection_string) as client,
                client.get_queue_sender(queue, keep_alive=None) as sender,
            ):
                sender.send_messages(ServiceBusMessage("slow"))
                for i in range(10):  # keep the receiver busy while the slow one's lock needs renewing
                    sender.send_messages(ServiceBusMessage(f"fast-{i}"))
                    time.sleep(0.4)
            assert wait_for(lambda: len(events) == 11, timeout=SLOW_SECONDS + 10)
            assert wait_for(lambda: short_locks.queue(queue).message_count == 0, timeout=5)
        finally:
            stop.set()
            thread.join(15)
        assert [event[:2] for event in events if event[0] == "slow"] == [("slow", 1)]  # delivered once
        assert short_locks.queue(f"{queue}/$DeadLetterQueue").message_count == 0
