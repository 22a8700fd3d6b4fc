"""Alerts through apprise: one bounded queue and one delivery worker per notification URL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

import apprise

from ...domain.errors import InvalidConfig
from ...domain.scopes import Scope
from ...domain.states import Transition
from ...ports import AlertSink
from ...settings import AlertSettings
from .message import WARNING, Alert, alert_of, indented, named, still_latched_alert

log = logging.getLogger(__name__)

# apprise bounds each socket read (4 s by default, ?rto= / ?cto= in a URL), not a whole
# send; this caps one attempt so a plugin that never returns cannot wedge its URL.
ATTEMPT_TIMEOUT_S = 60.0
# After cancelling the workers at stop: how long to wait for them to unwind.
UNWIND_S = 1.0

# Called after every attempt with the redacted URL and "sent", "retrying" or "failed".
AttemptHook = Callable[[str, str], None]


class _Target:
    """One notification URL: its own apprise object, queue and worker, so a URL that
    fails or hangs is retried alone and never holds up the others; order is kept."""

    def __init__(self, index: int, url: str, queue_size: int) -> None:
        self.apprise = apprise.Apprise()
        if not self.apprise.add(url):
            raise InvalidConfig(f"alerts.urls[{index}]", "apprise cannot use this URL"
                                " (unknown scheme or missing token)")
        # By its index in alerts.urls and its scheme only: apprise's privacy form masks
        # passwords and tokens, but a plugin may carry a secret in the user, the host (an
        # ntfy topic), the path or the query (reviews 40g, 40h, 40k).
        self.name = f"alerts.urls[{index}] {self.apprise[0].url(privacy=True).split(':')[0]}"
        self.queue: asyncio.Queue[Alert] = asyncio.Queue(maxsize=queue_size)
        # Per scope (Alert.scope), the Alert.repeats of the repeats queued since its last
        # alert that was news, not yet sent: a repeat merges into one of these only.
        self.waiting: dict[str, set[str]] = {}
        self.sending: Alert | None = None
        self.worker: asyncio.Task[None] | None = None

    def left(self) -> int:
        return self.queue.qsize() + (self.sending is not None)


class AppriseAlertSink(AlertSink):
    """Delivers one alert per transition to every configured URL, in the background.

    Counters (for telemetry): `sent`, `failed` (gave up after retries), `retried`
    (failed attempts that were retried), `dropped` (queue full, or left at stop),
    `merged` (a renewed trip's alert not queued: one like it was waiting, Alert.repeats).
    """

    def __init__(self, settings: AlertSettings, on_attempt: AttemptHook | None = None) -> None:
        self.settings = settings
        self.on_attempt = on_attempt
        self.targets = [_Target(i, url, settings.queue_size)
                        for i, url in enumerate(settings.urls)]
        self.sent = self.failed = self.retried = self.dropped = self.merged = 0
        self._stopped = False

    def notify(self, transitions: Sequence[Transition]) -> None:
        try:
            for transition in transitions:
                self._queue(alert_of(transition))
        except Exception:  # the transition is already durable: an alert bug must not fail it
            log.exception("alerts for %d transition(s) could not be queued", len(transitions))

    def still_latched(self, current: Sequence[Transition]) -> None:
        try:
            if current:
                self._queue(still_latched_alert(current))
        except Exception:  # as notify: an alert bug must not stop a start
            log.exception("the alert for %d latched scope(s) could not be queued",
                          len(current))

    def warn(self, scope: Scope, what: str, body: str) -> None:
        title = f"ESS {named(scope)}{what}"
        try:  # the body's lines past its first come from a caller's text (review 42l)
            self._queue(Alert(title, indented(body), WARNING, 0, scope=str(scope)))
        except Exception:  # as notify: an alert bug must not fail the act
            log.exception("the alert %r could not be queued", title)

    def _queue(self, alert: Alert) -> None:
        for target in self.targets:
            if self._stopped:
                self._drop(target, alert, "alerts are stopped")
                continue
            if alert.repeats and alert.repeats in target.waiting.get(alert.scope, ()):
                self.merged += 1
                log.info("alert v%d %r to %s merged into the one like it waiting",
                         alert.version, alert.title, target.name)
                continue
            if not alert.repeats and alert.scope:  # news of the scope, queued or dropped:
                target.waiting.pop(alert.scope, None)  # nothing before it takes a repeat
            try:
                target.queue.put_nowait(alert)
            except asyncio.QueueFull:
                self._drop(target, alert, f"queue full ({self.settings.queue_size})")
                continue
            if alert.repeats:
                target.waiting.setdefault(alert.scope, set()).add(alert.repeats)

    def _drop(self, target: _Target, alert: Alert, why: str) -> None:
        self.dropped += 1
        log.warning("alert v%d %r to %s dropped: %s", alert.version, alert.title,
                    target.name, why)

    async def start(self) -> None:
        """Alerts queued before start (e.g. a fail-closed trip at build) go out now."""
        for target in self.targets:
            if target.worker is None and not self._stopped:
                target.worker = asyncio.create_task(self._deliver(target),
                                                    name=f"alerts {target.name}")

    async def stop(self, grace_s: float) -> None:
        if self._stopped:
            return
        self._stopped = True
        workers = [t.worker for t in self.targets if t.worker is not None]
        if workers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained(), grace_s)
            for worker in workers:
                worker.cancel()
            # A send runs in apprise's thread pool and cannot be interrupted; cancelling
            # only stops waiting for it, so this wait is short.
            await asyncio.wait(workers, timeout=UNWIND_S)
        for target in self.targets:
            if left := target.left():
                self.dropped += left
                log.error("%d alert(s) to %s undelivered at stop", left, target.name)

    async def _drained(self) -> None:
        await asyncio.gather(*(t.queue.join() for t in self.targets))

    async def _deliver(self, target: _Target) -> None:
        while True:
            alert = target.sending = await target.queue.get()
            if (keys := target.waiting.get(alert.scope)) is not None:
                keys.discard(alert.repeats)  # sent now: a later repeat is news again
                if not keys:
                    del target.waiting[alert.scope]
            try:
                await self._send(target, alert)
            except Exception:  # a bug in one send must not end this URL's deliveries
                self.failed += 1
                log.exception("alert v%d to %s failed", alert.version, target.name)
            # Not reached when cancelled at stop: the alert in flight then counts as dropped.
            target.sending = None
            target.queue.task_done()

    async def _send(self, target: _Target, alert: Alert) -> None:
        """Try once, then `retries` more times with exponential backoff."""
        delay = min(self.settings.backoff_initial_s, self.settings.backoff_max_s)
        for attempt in range(self.settings.retries + 1):
            error = await self._attempt(target, alert)
            if error is None:
                self.sent += 1
                self._report(target, "sent")
                return
            if attempt == self.settings.retries:
                break
            self.retried += 1
            log.info("alert v%d to %s failed (%s); retry in %gs", alert.version,
                     target.name, error, delay)
            self._report(target, "retrying")
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.backoff_max_s)
        self.failed += 1
        log.error("alert v%d %r to %s failed after %d attempt(s): %s", alert.version,
                  alert.title, target.name, self.settings.retries + 1, error)
        self._report(target, "failed")

    async def _attempt(self, target: _Target, alert: Alert) -> str | None:
        """None once delivered, otherwise why not."""
        result = await target.apprise.async_notify(
            body=alert.body, title=alert.title, notify_type=apprise.NotifyType(alert.severity),
            body_format=apprise.NotifyFormat.TEXT, timeout=ATTEMPT_TIMEOUT_S)
        with result:  # releases the log capture apprise keeps per call
            if result:
                return None
            # apprise returns a status rather than raising; the warnings it captured
            # during the call (its default capture level) say why.
            reasons = [entry.message for entry in result.logs()]
            return reasons[-1] if reasons else result.status.name

    def _report(self, target: _Target, outcome: str) -> None:
        if self.on_attempt is not None:
            try:
                self.on_attempt(target.name, outcome)
            except Exception:  # an observer's bug must not stop deliveries
                log.exception("alert attempt hook failed")
