"""Fan-out and fan-in of an experiment's work items on the bus, and its progress.

Fan-in needs no lock: every item marks itself done *before* it lists the stage's finished items, so whichever
item finishes last sees them all. Several may see them all at once; each then announces the stage with the
same event id (derived from the experiment request and the stage), and the idempotent bus runs its handler once.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.blob_layout import safe_segment
from shared.events import Event, ExperimentItemRequested, ExperimentProgressed, ExperimentStageCompleted
from shared.events.envelope import derived_event_id
from shared.experiments.store import ExperimentPlan, ExperimentStore, Progress, StagePlan
from shared.ports import Clock


def item_requests(cause: Event, plan: ExperimentPlan, stage: StagePlan) -> list[Event]:
    return [cause.follow_up(ExperimentItemRequested, {
        "use_case": plan.use_case, "experiment_id": plan.experiment_id, "stage": stage.stage, "item_id": item.item_id,
    }, key=item.item_id) for item in stage.items]


def progress_event(cause: Event, plan: ExperimentPlan, stage: StagePlan, *, done: Sequence[str], clock: Clock,
                   store: ExperimentStore) -> Event:
    """Lines done / total of the stage, saved as the experiment's progress and journaled for `wait`."""
    finished = set(done)
    items_done = [item for item in stage.items if safe_segment(item.item_id) in finished]
    progress = Progress(experiment_id=plan.experiment_id, use_case=plan.use_case, stage=stage.stage,
                        items_done=len(items_done), items_total=len(stage.items),
                        lines_done=sum(len(item.line_numbers) for item in items_done), lines_total=stage.lines,
                        updated_at=clock.now())
    store.save_progress(progress)
    return cause.follow_up(ExperimentProgressed, progress.model_dump(exclude={"updated_at"}), key="progress")


def after_item(cause: Event, plan: ExperimentPlan, stage: StagePlan, *, clock: Clock,
               store: ExperimentStore) -> list[Event]:
    """An item is done: report progress, and announce the stage when it was the last one."""
    done = store.finished_items(plan.use_case, plan.experiment_id, stage.stage)
    events = [progress_event(cause, plan, stage, done=done, clock=clock, store=store)]
    if {safe_segment(item.item_id) for item in stage.items} <= set(done):
        announced = ExperimentStageCompleted.create(
            {"use_case": plan.use_case, "experiment_id": plan.experiment_id, "stage": stage.stage},
            correlation_id=plan.correlation_id, causation_id=cause.id)
        events.append(announced.model_copy(update={
            "id": derived_event_id(plan.requested_by, announced.type, stage.stage)}))
    return events
