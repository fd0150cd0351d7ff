"""A process's in-memory view of one event: what a poll needs, with no Redis round trip.

Every gateway (and the leader) refreshes each view a few times a second in one MULTI that
reads the config, the draw, the counters and the new tail of the event's change log.
Answering a poll is then CPU only: find the ticket's line, compare it with the served
pointer, and look up the few tickets that left, lost priority or were requeued.
"""

from __future__ import annotations

import bisect
import enum
import math
from dataclasses import dataclass, field

from waitroom.draw import DrawnOrder
from waitroom.schedule import EventConfig, EventState


class TicketStatus(enum.StrEnum):
    PREQUEUE = "prequeue"
    WAITING = "waiting"
    ADMITTED = "admitted"
    DONE = "done"
    CLOSED = "closed"


@dataclass(slots=True)
class Resolution:
    """Where one ticket stands, as far as this view knows."""

    status: TicketStatus
    line: int | None = None
    position: int | None = None
    eta_ms: int | None = None
    requeued: bool = False
    admitted_at_ms: int | None = None
    # The ticket's turn came while it was silent: it must be requeued (a Redis write).
    lost_priority: bool = False


@dataclass(frozen=True, slots=True)
class EtaBasis:
    """How the ETA is computed: admissions per second (measured, never above the configured
    rate, or configured until the leader has measured a minute of backlog), the share of
    skips, and how long sessions last (None until the leader's meter trusts its estimate)."""

    rate_per_s: float
    skip_share: float
    measured: bool
    session_s: float | None = None


@dataclass(slots=True)
class EventView:
    """The cached state of one event and the log-derived sets that make polls local."""

    event_id: str
    config: EventConfig
    commitment: str = ""
    seed_hex: str | None = None
    prequeue: int | None = None
    drawn_at_ms: int | None = None
    order: DrawnOrder | None = None
    # One chance per family: the lottery's entries (ascending arrivals; None: no such
    # rule), and the client number each identified ticket gave (its admission carries it).
    kept: list[int] | None = None
    families: dict[int, str] = field(default_factory=dict)
    seq: int = 0
    served: int = 0
    active: int = 0
    stats: dict[str, str] = field(default_factory=dict)
    basis: EtaBasis | None = None  # derived from stats and config at each refresh
    log_index: int = 0
    # From the change log.
    admitted_lines: list[int] = field(default_factory=list)  # served pointer after each batch
    admitted_ts: list[int] = field(default_factory=list)
    skipped: dict[int, int] = field(default_factory=dict)  # arrival -> line it lost priority at
    requeued: dict[int, int] = field(default_factory=dict)  # arrival -> current line
    left: set[int] = field(default_factory=set)
    ended: set[int] = field(default_factory=set)
    left_lines: list[int] = field(default_factory=list)  # sorted lines of tickets that left
    # Ticket ids whose MAC this process has checked -> arrival: a poll of a known id costs a
    # dict lookup instead of a base64 decode and a MAC. (A new salt makes a new view.)
    verified_ids: dict[str, int] = field(default_factory=dict)

    @property
    def drawn(self) -> bool:
        return self.order is not None

    def state(self, now_ms: int) -> EventState:
        return self.config.state(now_ms)

    def apply_log(self, entries: list[str], local: bool = False) -> None:
        """Fold change-log entries into the view.

        ``local`` entries are this process's own writes, shown at once; they come back
        later through the shared log, so every kind of entry is applied idempotently.
        """
        for entry in entries:
            kind, _, rest = entry.partition(" ")
            if kind == "A":
                line, ts = rest.split(" ")
                self.admitted_lines.append(int(line))
                self.admitted_ts.append(int(ts))
            elif kind == "S":
                arrival, line = rest.split(" ")
                self.skipped[int(arrival)] = int(line)
            elif kind == "R":
                arrival, line = rest.split(" ")
                self.skipped.pop(int(arrival), None)
                self.requeued[int(arrival)] = int(line)
            elif kind == "L":
                arrival_left = int(rest)
                if arrival_left in self.left:
                    continue
                self.left.add(arrival_left)
                self.skipped.pop(arrival_left, None)
                line_left = self.line_of(arrival_left)
                if line_left is not None:
                    bisect.insort(self.left_lines, line_left)
            elif kind == "E":
                self.ended.add(int(rest))
        if not local:
            self.log_index += len(entries)

    def set_order(self, order: DrawnOrder) -> None:
        """Install the drawn order; lines of tickets that left before the draw become known."""
        self.order = order
        self.prequeue = order.prequeue
        self.left_lines = sorted(
            line for line in (self.line_of(a) for a in self.left) if line is not None
        )

    def line_of(self, arrival: int) -> int | None:
        """The ticket's current line, or None while its pre-queue draw is still to come."""
        requeued = self.requeued.get(arrival)
        if requeued is not None:
            return requeued
        if self.order is not None:
            return self.order.line(arrival)
        if self.prequeue is not None and arrival > self.prequeue:
            return arrival
        return None

    def waiting_count(self) -> int:
        """Tickets in line and not yet served (pre-queue included)."""
        if self.order is None and self.prequeue is None:
            return max(0, self.seq - len(self.left) - len(self.ended))
        ahead_left = len(self.left_lines) - bisect.bisect_right(self.left_lines, self.served)
        return max(0, self.seq - self.served - ahead_left)

    def position(self, line: int) -> int:
        """Tickets still in line ahead of ``line``, plus one."""
        if not self.left_lines:
            return max(1, line - self.served)
        lo = bisect.bisect_right(self.left_lines, self.served)
        hi = bisect.bisect_left(self.left_lines, line)
        return max(1, line - self.served - max(0, hi - lo))

    def admitted_at(self, line: int) -> int | None:
        """When the served pointer passed ``line`` (ms), if this view has seen it."""
        index = bisect.bisect_left(self.admitted_lines, line)
        if index == len(self.admitted_lines):
            return None
        return self.admitted_ts[index]

    def set_stats(self, stats: dict[str, str]) -> None:
        """Install fresh counters (and the config they go with): the ETA basis is derived once."""
        self.stats = stats
        self.basis = self._derive_basis()

    def eta_basis(self) -> EtaBasis:
        """The measured outflow the leader publishes, or the configured rate until it has one."""
        if self.basis is None:
            self.basis = self._derive_basis()
        return self.basis

    def _derive_basis(self) -> EtaBasis:
        # -1 (or absent): the leader has not measured a minute of backlog yet.
        rate_milli = int(self.stats.get("eta_rate_milli", "-1"))
        skip_ppm = int(self.stats.get("eta_skip_ppm", "0"))
        session_ms = int(self.stats.get("eta_session_ms", "-1"))
        session_s = session_ms / 1000 if session_ms > 0 else None
        configured = self.config.admit_per_minute / 60
        if rate_milli >= 0:
            # Never above the configured rate: the token bucket holds the outflow to it, so
            # a faster minute is the bucket's credit spent after a stall (a failover, Redis
            # down), not a pace that lasts. Taken at its word, it promised waits 11 % short
            # in the short fault drill, after the leader's failover.
            return EtaBasis(min(rate_milli / 1000, configured), skip_ppm / 1e6, True, session_s)
        return EtaBasis(configured, skip_ppm / 1e6, False, session_s)

    def eta_ms(self, position: int, now_ms: int, state: EventState | None = None) -> int | None:
        """Estimated wait before a ticket at ``position`` is admitted; None when unknown."""
        if state is None:
            state = self.state(now_ms)
        if state is EventState.PAUSED or state is EventState.CLOSED:
            return None
        basis = self.eta_basis()
        expected_ahead = (position - 1) * (1 - basis.skip_share) + 1
        seconds = self._seconds_to_admit(expected_ahead, basis)
        if seconds is None:
            return None
        wait_ms = math.ceil(seconds * 1000)
        if state is not EventState.OPEN or not self.drawn:
            wait_ms += max(0, self.config.opens_ms - now_ms)
        return wait_ms

    def _seconds_to_admit(self, ahead: float, basis: EtaBasis) -> float | None:
        """Seconds until ``ahead`` more tickets are admitted; None when unknown.

        The door has room for ``max_active - active`` now: those go at the outflow rate
        (measured, or configured until measured). After that, admissions run no faster
        than the door allows once full: ``max_active`` sessions lasting ``session_s`` on
        average let in ``max_active / session_s`` per second (Little's law). Past the
        room, until the leader knows how long sessions last, nobody knows: the configured
        rate alone promised waits a third to two thirds too short on the drills' nights,
        where the door bound from the first minute."""
        rate = basis.rate_per_s
        room = min(ahead, max(0, self.config.max_active - self.active))
        if basis.session_s is None:
            if ahead > room:
                return None
            door = rate
        else:
            door = self.config.max_active / basis.session_s
        steady = min(rate, door)
        if steady <= 0:
            return None
        return room / rate + (ahead - room) / steady

    def in_line(self, arrival: int, now_ms: int, seen: int | None = None) -> Resolution | None:
        """The common case of ``resolve``, answered with the fewest steps: a ticket waiting
        in line while the event is open (not gone, not skipped, its line not yet served).
        None in every other case, which the rest of ``resolve`` answers. Polls are the
        load, and most of them are this case (``make bench``)."""
        if self.config.state(now_ms) is not EventState.OPEN:  # first: the pre-queue's polls
            return None
        if arrival in self.skipped or arrival in self.left or arrival in self.ended:
            return None
        line = self.requeued.get(arrival)
        requeued = line is not None
        if line is None:
            line = self.line_of(arrival)
            if line is None:
                return None
        if line <= self.served:
            return None
        position = self.position(line)
        if seen is not None and not requeued and seen < position:
            position = seen
        eta_ms = self.eta_ms(position, now_ms, EventState.OPEN)
        return Resolution(TicketStatus.WAITING, line, position, eta_ms, requeued)

    def resolve(self, arrival: int, now_ms: int, seen: int | None = None) -> Resolution:
        """Where the ticket with this arrival number stands (the poll's hot path).

        ``seen``: the position the parent's page showed last. A ticket's true position
        never rises (until it is requeued: a new line), so when this view is a moment
        behind the gateway that answered before (views refresh every quarter second, a
        parent's polls go to any gateway), the position is the lower of the two."""
        waiting = self.in_line(arrival, now_ms, seen)
        if waiting is not None:
            return waiting
        return self.resolve_any(arrival, now_ms, seen)

    def resolve_any(self, arrival: int, now_ms: int, seen: int | None = None) -> Resolution:
        """``resolve`` in full, every case by the general rules (``in_line`` answers the
        common one with fewer steps; tests/test_view.py checks that both agree)."""
        if arrival in self.left or arrival in self.ended:
            return Resolution(TicketStatus.DONE)
        state = self.config.state(now_ms)
        requeued = arrival in self.requeued
        line = self.line_of(arrival)
        if line is None:
            if state is EventState.CLOSED:
                return Resolution(TicketStatus.CLOSED)
            return Resolution(TicketStatus.PREQUEUE, eta_ms=max(0, self.config.opens_ms - now_ms))
        if arrival in self.skipped:
            if state is EventState.CLOSED:
                return Resolution(TicketStatus.CLOSED, line=line)
            return Resolution(TicketStatus.WAITING, line=line, lost_priority=True)
        if line <= self.served:
            admitted_at = self.admitted_at(line)
            if admitted_at is not None:
                if now_ms >= admitted_at + self.config.session_ttl_ms:
                    return Resolution(TicketStatus.DONE, line=line, requeued=requeued)
                return Resolution(
                    TicketStatus.ADMITTED, line=line, requeued=requeued, admitted_at_ms=admitted_at
                )
        if state is EventState.CLOSED:
            return Resolution(TicketStatus.CLOSED, line=line, requeued=requeued)
        position = self.position(line)
        if seen is not None and not requeued:
            position = min(position, seen)
        return Resolution(
            TicketStatus.WAITING,
            line=line,
            position=position,
            eta_ms=self.eta_ms(position, now_ms, state),
            requeued=requeued,
        )
