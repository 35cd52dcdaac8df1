"""When a burst of changes is due: the quiet window, its cap, and the eager path.

    window = QuietWindow.from_build(config.build, margin_s=0.0, eager_s=0.01)
    at = window.due(burst, eager=is_template)   # a time.monotonic() value; now or later

Nothing here runs while nothing happens: a window opens with the first change of a burst.

* A **save** (at most three paths pending) is due ``build.delay`` ms after its last change.
* A **burst** (a checkout, a formatter) may pause between files, so once more paths are
  pending the window grows to ``max(3 * delay, 50 ms)``.
* Every burst is cut ``max(1000, 10 * delay)`` ms after its first change at the latest.
* **Eager** changes (a template swap, a stylesheet refresh: cheap, harmless to repeat) are
  due at once when the source says every write is complete (inotify's close-write or
  rename, in order), so a truncate and its write stay one swap; a file still open for
  writing waits for its close (up to the cap); otherwise (a deletion, which may be the first
  half of an editor's rename, or a source that cannot tell) after ``eager_s`` of quiet.
* ``margin_s`` is how late a backend may still report a change made before: none for inotify
  (the kernel queues events as they happen), a couple of steps for watchfiles' loop, about a
  poll interval and a half when polling.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..config import BuildConfig
from .changes import Burst

SMALL_BATCH = 3  # up to this many paths pending looks like a save, more like a burst
BURST_QUIET_MS = 50  # a burst (checkout, formatter) must be quiet at least this long
MIN_CAP_MS = 1000  # a burst is emitted after max(MIN_CAP_MS, 10 * delay) ms at the latest


@dataclass(frozen=True)
class QuietWindow:
    save_s: float
    burst_s: float
    cap_s: float
    margin_s: float
    eager_s: float

    @classmethod
    def from_build(cls, build: BuildConfig, *, margin_s: float, eager_s: float) -> QuietWindow:
        save_s = max(0, build.delay) / 1000
        return cls(
            save_s=save_s,
            burst_s=max(3 * save_s, BURST_QUIET_MS / 1000),
            cap_s=max(MIN_CAP_MS, 10 * build.delay) / 1000,
            margin_s=margin_s,
            eager_s=eager_s,
        )

    def due(self, burst: Burst, *, eager: Callable[[str], bool] | None) -> float:
        """The time.monotonic() at which ``burst`` (not empty) should be emitted."""
        cap_at = burst.first_at + self.cap_s
        small = len(burst) <= SMALL_BATCH
        if small and eager is not None and all(map(eager, burst.paths)):
            if burst.complete():
                return burst.last_at
            if burst.writing():
                return cap_at  # still open for writing: its close-write says when
            return min(cap_at, burst.last_at + self.eager_s)
        quiet = self.save_s if small else self.burst_s
        return min(cap_at, burst.last_at + quiet + self.margin_s)
