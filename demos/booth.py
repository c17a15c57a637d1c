"""What a booth needs beyond the page: live seats with a line, per-client time caps, and one
friendly line per failure.

**Seats** (``LiveSeats``). A fixed number of visitors stream at once (``--concurrency``). The
others stand in a first-come line and are told, on every frame their browser sends, their
place and how long they wait at most: the seats' remaining times under the time cap, each
freed seat taken by the next in line for a full visit (people leave earlier, never later).
A seat whose browser has sent nothing for ``idle_s`` is free again (a closed tab, a stopped
camera); the seconds it used stay counted, so pausing does not reset the cap. For a script
(``wall_clock``) the visit runs from its first call, gaps between calls included.

**Clients.** A browser page is a client (its session); a script calling the live API (every
REST call is a new session) is keyed by its address, so its calls add up to one visit and the
cap holds. After the cap a client's visit is over; an address may start a new one after
another ``cap_s`` (others get a turn), a page by reloading, which puts it at the back of the
line.

**Failures** (``report``). A visitor sees one readable line with a short id; the log gets one
line with the same id, and the traceback only at debug level.

Data contract: times are seconds of the caller's ``clock`` (monotonic); keys are strings.
"""
from __future__ import annotations

import heapq
import logging
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Admission:
    state: str  # "live", "waiting" or "over"
    left_s: float = 0.0  # live: seconds of the visit left
    place: int = 0  # waiting: 1 = next
    wait_s: float = 0.0  # waiting: the longest it can take


class LiveSeats:
    """``seats`` live visitors at once, a first-come line, ``cap_s`` of live time a visit."""

    def __init__(self, seats: int, cap_s: float, *, idle_s: float = 3.0, line_max: int = 64):
        self.seats, self.cap_s, self.idle_s, self.line_max = seats, cap_s, idle_s, line_max
        self._live: dict[str, tuple[float, float]] = {}  # key -> (started, last frame)
        self._line: dict[str, float] = {}  # key -> last frame; insertion order is the line
        self._spent: dict[str, float] = {}  # seconds used by keys whose seat lapsed
        self._over: dict[str, float] = {}  # key -> when its visit ended
        self._first: dict[str, float] = {}  # wall-clock keys -> their first frame
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        for key, (started, last) in list(self._live.items()):
            if now - last > self.idle_s:
                del self._live[key]
                self._spent[key] = last - started
        for key, last in list(self._line.items()):
            if now - last > self.idle_s:
                del self._line[key]
        for key, ended in list(self._over.items()):
            if now - ended > self.cap_s:
                del self._over[key]
                self._spent.pop(key, None)
                self._first.pop(key, None)

    def claim(self, key: str, now: float, *, wall_clock: bool = False) -> Admission:
        """A frame from ``key`` at ``now``: may it be stylized? ``wall_clock``: the visit lasts
        ``cap_s`` from its first frame, gaps included (a script's calls, each a frame)."""
        with self._lock:
            self._expire(now)
            if key in self._over:
                return Admission("over")
            if wall_clock:
                self._spent[key] = now - self._first.setdefault(key, now)
            if key not in self._live:
                self._line.setdefault(key, now)
                self._line[key] = now
                first = next(iter(self._line))
                if len(self._live) < self.seats and first == key:
                    del self._line[key]
                    self._live[key] = (now - self._spent.pop(key, 0.0), now)
                else:
                    place = list(self._line).index(key) + 1
                    return Admission("waiting", place=place, wait_s=self._wait(place, now))
            started, _ = self._live[key]
            if now - started >= self.cap_s:
                del self._live[key]
                self._over[key] = now
                return Admission("over")
            self._live[key] = (started, now)
            return Admission("live", left_s=self.cap_s - (now - started))

    def _wait(self, place: int, now: float) -> float:
        frees = [max(0.0, self.cap_s - (now - started)) for started, _ in self._live.values()]
        frees += [0.0] * (self.seats - len(frees))
        heapq.heapify(frees)
        t = 0.0
        for _ in range(place):
            t = heapq.heappop(frees)
            heapq.heappush(frees, t + self.cap_s)
        return t

    def release(self, key: str) -> None:
        with self._lock:
            self._live.pop(key, None)
            self._line.pop(key, None)

    def counts(self) -> tuple[int, int]:
        """(visitors live, visitors waiting)."""
        with self._lock:
            return len(self._live), len(self._line)


def clock_text(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    return f"{s // 60}:{s % 60:02d}"


def status_text(a: Admission, seats: int) -> str:
    """The line above the camera: time left, place in line, or the end of the visit."""
    if a.state == "live":
        return f"● **Live** · {clock_text(a.left_s)} of your turn left"
    if a.state == "waiting":
        who = "you are next" if a.place == 1 else f"you are number {a.place} in line"
        return (f"**Waiting: all {seats} camera seat{'s' * (seats != 1)} are taken: {who}.** Your camera starts by "
                f"itself within {clock_text(a.wait_s)} at most (sooner if someone leaves). "
                "Keep this page open; meanwhile try the File and Style map tabs.")
    return ""


def report(what: str, error: BaseException, name: str | None = None, path: str | Path | None = None) -> str:
    """One failure -> the visitor's line (``⚠ ... (ref ID)``); logs one line with the id, the
    traceback at debug level. ``name``: the file as the visitor knows it, put in place of
    ``path`` (server paths never reach the page)."""
    from realtime import UserError

    ref = secrets.token_hex(3)
    detail = " ".join(str(error).split())
    if path is not None:
        detail = detail.replace(str(path), name or Path(path).name)
    log.warning("%s failed [ref %s]: %s: %s", what, ref, type(error).__name__, detail[:300])
    log.debug("traceback of ref %s", ref, exc_info=error)
    if isinstance(error, (UserError, ValueError)):  # our own checks: their text is for people
        return f"⚠ {detail[:300]} (ref {ref})"
    about = f" with {name}" if name else ""
    return f"⚠ Something went wrong{about} ({type(error).__name__}); please try another file (ref {ref})."
