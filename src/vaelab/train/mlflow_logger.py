"""A training's MLflow run, bounded, and never in the way of the training itself.

:func:`open_tracking` reaches the tracking store before the first step: a remote server
that does not answer stops the stage there with a UserError, in seconds
(:mod:`vaelab.tracking_http`, ``registry.retries / backoff / timeout``). Each replicate's
training is one :class:`TrainRun`, however often it is resumed: the run's id is kept in the
replicate's checkpoint, a resumed training continues that run (a killed one, left RUNNING or
marked KILLED, is set RUNNING again) and sends it the epochs of the checkpoint it lacks, and
a rerun whose checkpoint holds the complete training only completes its run. A checkpoint
without a run id (older, or made while the store was away) gets a new run with its epochs so far.

Once training has started, tracking never stops it and waits for the store at most twice
per failure: each epoch's metrics go in one request of at most ``registry.timeout`` (no
retries). On the first failure :class:`Tracking` warns and tries nothing more; the metrics
are kept, and at the end of the replicate's training one bounded attempt (with
``registry.retries``) sends them and ends the run. If that fails too, the run is left
incomplete, with a warning that says what it lacks; the model is written all the same,
and rerunning the training once the store answers completes the run. Before sending to a
resumed run, or after a failure, the run is asked which epochs it has, metric by metric (a
request whose answer was lost may have arrived): no epoch is logged twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from vaelab.config.registry_config import RegistryConfig
from vaelab.errors import UserError
from vaelab.tracking import NOT_METRICS, experiment_id, shaping_params, tracking_uri
from vaelab.tracking_http import bounded_mlflow_http, connect, display_uri, one_try

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

log = logging.getLogger("vaelab.train")

RUNNING, FINISHED, FAILED, KILLED = "RUNNING", "FINISHED", "FAILED", "KILLED"

# A row of the loop's history: {"epoch": 1, "step": 5, "train_loss": ..., ...}; the epoch is
# the MLflow step, and neither it nor the optimiser's step count is a metric (NOT_METRICS).
Row = dict[str, float]


@dataclass
class Tracking:
    """The stage's tracking store, and whether it still answers."""

    client: MlflowClient
    uri: str
    experiment_id: str
    cfg: RegistryConfig
    failure: str | None = None  # what failed first since the store last answered
    retried: bool = False  # the one bounded attempt after that failure is spent

    def attempt(self, what: str, action: Callable[[], object], *, patient: bool = False) -> bool:
        """Run ``action`` (MLflow requests) with bounded HTTP; whether it succeeded.

        A quick attempt is one try of at most ``registry.timeout``; a patient one has
        ``registry.retries``. After a failure, quick attempts are not made at all and one
        patient attempt is; after that nothing is, until the store answers again.
        """
        from mlflow.exceptions import MlflowException

        if self.failure is not None and (not patient or self.retried):
            return False
        if self.failure is not None:
            self.retried = True
        try:
            with bounded_mlflow_http(self.cfg) if patient else one_try(self.cfg):
                action()
        except MlflowException as err:
            if self.failure is None:
                log.warning(
                    "MLflow tracking store %s failed while %s (%s). Training goes on without it: "
                    "nothing more is sent until one last try at the end of this training, and the "
                    "metrics are kept for it",
                    display_uri(self.uri),
                    what,
                    err.message,
                )
            self.failure = f"{what}: {err.message}"
            return False
        if self.failure is not None:
            log.info("MLflow tracking store %s answers again", display_uri(self.uri))
            self.failure, self.retried = None, False
        return True


@contextmanager
def open_tracking(cfg: RegistryConfig) -> Iterator[Tracking]:
    """The stage's tracking store with MLflow's HTTP bounded; UserError before anything is
    written when a remote server does not answer or cannot give the ``vaelab`` experiment."""
    from mlflow.exceptions import MlflowException

    uri = tracking_uri()
    with connect(uri, cfg) as client:
        try:
            exp_id = experiment_id(client, uri)
        except MlflowException as err:
            raise UserError(
                f"MLflow tracking store {display_uri(uri)} (MLFLOW_TRACKING_URI): "
                f"cannot find or create the experiment: {err.message}"
            ) from err
        yield Tracking(client, uri, exp_id, cfg)


def _now_ms() -> int:
    return int(time.time() * 1000)


# Epochs are sent as they end, but at most one request per this many seconds (the rest wait
# for the next epoch's send or the end): a short epoch (65 images on a CPU) cost as much again
# in its sqlite or HTTP request. A training killed before a send loses nothing: the checkpoint
# keeps every epoch's row and the next start sends what the run lacks (begin).
SEND_EVERY = 5.0


@dataclass
class TrainRun:
    """One replicate's training run: created or continued, its epochs logged as they end, ended."""

    tracking: Tracking
    name: str  # <variant>/seed<k>
    params: Mapping[str, Any]  # flattened; the run gets those that shape the variant
    tags: Mapping[str, str]
    epochs: int  # of the whole training
    rerun: str  # how to rerun this training, for the warning of an incomplete run
    run_id: str | None = None
    status: str | None = None  # the run's status as last seen or set
    trained: int = 0  # epochs trained so far
    # (ms timestamp, row) not known to be sent
    pending: list[tuple[int, Row]] = field(default_factory=list)
    # whether the epochs the run holds are known (else it is asked before sending)
    checked: bool = True
    # The epochs the run already held when asked (per metric key): a resumed run can be ahead
    # of its checkpoint, and those epochs come round again as the training catches up.
    held: dict[str, set[int]] = field(default_factory=dict)
    opened: bool = False  # the run exists, with its params
    complete: bool = False  # every epoch sent and the run ended
    sent_at: float = float("-inf")  # time.monotonic() of the last send of epochs (SEND_EVERY)

    def begin(self, run_id: str | None, history: list[Row]) -> str | None:
        """Before the first step: continue the checkpoint's run ``run_id`` (None: create one)
        and send it the epochs of ``history`` it lacks. The run's id; ``run_id`` when the store
        failed."""
        self.run_id, self.trained, self.checked = run_id, len(history), run_id is None
        self.held = {}
        self.pending = [(_now_ms(), row) for row in history]
        self.tracking.attempt(f"starting the run {self.name}", self._sync)
        return self.run_id

    def log_epoch(self, row: Row) -> None:
        """Send the epoch's metrics with those still pending (one quick attempt) when the last
        send is SEND_EVERY seconds old, else keep them for the next send or the end."""
        self.trained = int(row["epoch"])
        self.pending.append((_now_ms(), row))
        if time.monotonic() - self.sent_at < SEND_EVERY:
            return
        self.sent_at = time.monotonic()
        self.tracking.attempt(
            f"logging epoch {int(row['epoch'])} of {self.epochs} of {self.name}", self._sync
        )

    def end(self, status: str = FINISHED) -> None:
        """Send what is pending and mark the run ``status``; warn when the store does not let it.

        A finished training gets the patient attempt; a failed or killed one a quick one, so
        that it stops at once.
        """
        what = f"ending the run {self.name} as {status}"
        if self.tracking.attempt(what, lambda: self._sync(status), patient=status == FINISHED):
            self.complete = status == FINISHED
            return
        lacks = []
        if self.run_id is None:
            lacks.append("it was never created")
        if self.pending:
            epochs = sorted({int(row["epoch"]) for _, row in self.pending})
            span = f"epoch {epochs[0]}" if len(epochs) == 1 else f"epochs {epochs[0]}-{epochs[-1]}"
            lacks.append(f"{span} of {self.epochs} not sent")
        lacks.append(
            f"it is not marked {status}"
            + (" and has no model_md5 tag" if status == FINISHED else "")
        )
        log.warning(
            "MLflow run %s (%s) is incomplete: %s (%s).%s Once %s answers, %s completes it.",
            self.run_id or "-",
            self.name,
            "; ".join(lacks),
            self.tracking.failure,
            " The model is written." if status == FINISHED else "",
            display_uri(self.tracking.uri),
            self.rerun,
        )

    def tag(self, key: str, value: str) -> None:
        """Set a tag on the run, once it is complete (patient attempt)."""
        if not self.complete or self.run_id is None:
            return  # end() warned that the run is incomplete
        run_id = self.run_id
        if not self.tracking.attempt(
            f"tagging the run {self.name}",
            lambda: self.tracking.client.set_tag(run_id, key, value),
            patient=True,
        ):
            log.warning(
                "MLflow run %s (%s) has no %s tag: `register` will not find it. "
                "Once %s answers, %s adds it.",
                run_id,
                self.name,
                key,
                display_uri(self.tracking.uri),
                self.rerun,
            )

    # ------------------------------------------------------------------ MLflow requests

    @property
    def _id(self) -> str:
        """The run's id, once it has one (the requests below are made after :meth:`_open`)."""
        return cast(str, self.run_id)

    def _sync(self, status: str | None = None) -> None:
        """Create the run if it is not there yet, send what is pending, mark it ``status``."""
        client = self.tracking.client
        if not self.opened:
            self._open()
        self._send()
        if status is not None and status != self.status:
            client.set_terminated(self._id, status)
            self.status = status

    def _open(self) -> None:
        from mlflow.entities import Param
        from mlflow.tracking.context.registry import resolve_tags

        client = self.tracking.client
        run = self._existing() if self.run_id is not None else None
        if run is None:
            # resolve_tags adds what mlflow.start_run would (user, source, ...).
            run = client.create_run(
                self.tracking.experiment_id, run_name=self.name, tags=resolve_tags(dict(self.tags))
            )
            self.run_id, self.status, self.checked = run.info.run_id, run.info.status, True
        else:
            self.status = was = run.info.status
            if was != RUNNING and not (was == FINISHED and self.trained >= self.epochs):
                # A killed or failed training goes on.
                client.update_run(self._id, status=RUNNING)
                self.status = RUNNING
            log.info("continuing MLflow run %s (%s), which was %s", self.run_id, self.name, was)
        if not run.data.params:  # also when creating it succeeded and logging its params did not
            shaping = shaping_params(self.params)
            client.log_batch(
                self._id, params=[Param(key, str(value)) for key, value in shaping.items()]
            )
        self.opened = True

    def _existing(self) -> Run | None:
        """The checkpoint's run, or None when the store does not have it (deleted, or another
        store)."""
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

        try:
            run = self.tracking.client.get_run(self._id)
        except MlflowException as err:
            if err.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
                raise
            run = None
        if run is not None and run.info.lifecycle_stage == "active":
            return run
        log.warning(
            "MLflow run %s of the checkpoint of %s is not in %s (deleted, or made in another "
            "tracking store): a new run gets its %d epoch(s) so far",
            self.run_id,
            self.name,
            display_uri(self.tracking.uri),
            self.trained,
        )
        self.run_id = None
        return None

    def _send(self) -> None:
        if not self.pending:
            return
        from mlflow.entities import Metric

        client = self.tracking.client
        if not self.checked:
            for key, steps in self._logged_steps().items():
                self.held.setdefault(key, set()).update(steps)
        metrics = [
            Metric(key, value, timestamp, int(row["epoch"]))
            for timestamp, row in self.pending
            for key, value in row.items()
            if key not in NOT_METRICS and int(row["epoch"]) not in self.held.get(key, ())
        ]
        # A request that fails may still have arrived: after a failure, ask first.
        self.checked = False
        client.log_batch(self._id, metrics=metrics)
        self.checked, self.pending = True, []

    def _logged_steps(self) -> dict[str, set[int]]:
        """The epochs the run has, per metric key of the pending rows."""
        keys = {key for _, row in self.pending for key in row if key not in NOT_METRICS}
        client = self.tracking.client
        return {
            key: {metric.step for metric in client.get_metric_history(self._id, key)}
            for key in sorted(keys)
        }


def ended_status(error: BaseException) -> str:
    """How a training that raised ``error`` ends its run: KILLED when it was stopped
    (Ctrl-C, SIGTERM as SystemExit), FAILED otherwise."""
    return KILLED if isinstance(error, (KeyboardInterrupt, SystemExit)) else FAILED
