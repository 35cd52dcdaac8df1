"""What the engine tells its observers (the proxy, smoke runs, tests): plain frozen data.

    def observe(event: Event) -> None:
        if isinstance(event, AppReady):
            print("up:", event.pid, event.ms)

    Engine(config, console, observers=[observe])

Observers are called synchronously on the event loop and must not block: queue and return.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Restarting:
    """A restart began: the old app is about to stop (hold new requests)."""

    reason: str  # "start", "change", "rerun"
    paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class AppStarted:
    pid: int
    generation: int


@dataclass(frozen=True)
class AppReady:
    """The app answers (its ready_url or port); ``ms`` since it was spawned."""

    pid: int
    generation: int
    ms: float
    answer: str = ""  # what it answered: "answered 404 at /"


@dataclass(frozen=True)
class AppNotReady:
    """The app did not answer within the ready timeout (or exited first)."""

    pid: int
    generation: int
    reason: str = ""  # what it did instead: "answered 503 at /health ..."


@dataclass(frozen=True)
class AppExited:
    """The app exited on its own (not stopped by pyair)."""

    pid: int
    code: int


@dataclass(frozen=True)
class BuildFailed:
    command: str
    returncode: int
    output: str


@dataclass(frozen=True)
class TemplatesSwapped:
    names: tuple[str, ...]
    paths: tuple[str, ...]
    ms: float


@dataclass(frozen=True)
class TemplateFailed:
    file: str | None
    line: int | None
    message: str
    source: tuple[str, ...] = ()  # numbered lines around the error


@dataclass(frozen=True)
class AssetsChanged:
    paths: tuple[str, ...]
    css_only: bool


@dataclass(frozen=True)
class RuleRan:
    """A ``[[build.rules]]`` command finished (``returncode`` 0: it passed)."""

    name: str
    paths: tuple[str, ...]
    returncode: int
    output: str
    ms: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass(frozen=True)
class ProcessStarted:
    """An extra process (``[[process]]``) started; ``generation`` counts its starts."""

    name: str
    pid: int
    generation: int
    reason: str  # "start", "app", "files", "rerun"


@dataclass(frozen=True)
class ProcessExited:
    """An extra process exited on its own (not stopped by pyair)."""

    name: str
    pid: int
    code: int


@dataclass(frozen=True)
class Stopping:
    """pyair is shutting down."""


Event = (
    Restarting
    | AppStarted
    | AppReady
    | AppNotReady
    | AppExited
    | BuildFailed
    | TemplatesSwapped
    | TemplateFailed
    | AssetsChanged
    | RuleRan
    | ProcessStarted
    | ProcessExited
    | Stopping
)
