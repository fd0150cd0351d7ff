"""Every Redis key name, in one place. All keys of one event share the hash tag ``{event}``.

Per-event keys (``wr:{event}:<name>``):

| name     | type   | holds                                                                |
| -------- | ------ | -------------------------------------------------------------------- |
| cfg      | hash   | schedule, rates, ``paused``, the ticket-id salt                      |
| draw     | hash   | ``commitment``, ``seed``, ``prequeue`` (P), ``drawn``, ``drawn_at``  |
| seq      | string | the last line number handed out (arrivals and requeues)             |
| served   | string | the served pointer S: every line <= S has had its turn               |
| hb       | hash   | ticket arrival number -> last heartbeat (ms, Redis clock)            |
| st       | hash   | arrival number -> ``L`` left / ``E`` session ended (absent: live)    |
| cur      | hash   | arrival number -> current line, for requeued tickets only            |
| rq       | hash   | line -> arrival number, for requeue entries only                     |
| skip     | hash   | arrival number -> line it was skipped at (lost priority, not back)   |
| active   | zset   | admitted arrival numbers scored by session expiry (ms)               |
| bucket   | hash   | outflow token bucket: ``credit``, ``ts``                             |
| log      | list   | change feed every gateway tails: A/S/R/L/E entries                   |
| audit    | list   | one entry per line served: ``line arrival outcome`` (verify-draw)    |
| stats    | hash   | running totals and the ETA basis                                     |
| fence    | string | highest leader epoch that wrote to this event                        |
| rl:<ip>  | string | joins by one client in the current window                            |
| fam      | hash   | one chance per family: family key -> the arrival that holds its entry  |
| tfam     | hash   | arrival -> the client number it identified (one-per-family events)    |
| fa       | hash   | arrival -> family identification attempts (at most a few)             |
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EVENTS = "wr:events"
LEADER = "wr:{leader}"
LEADER_EPOCH = "wr:{leader}:epoch"

EVENT_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True, slots=True)
class EventKeys:
    """Key names of one event, all under the event's hash tag."""

    event_id: str

    def _k(self, name: str) -> str:
        return f"wr:{{{self.event_id}}}:{name}"

    @property
    def cfg(self) -> str:
        return self._k("cfg")

    @property
    def draw(self) -> str:
        return self._k("draw")

    @property
    def seq(self) -> str:
        return self._k("seq")

    @property
    def served(self) -> str:
        return self._k("served")

    @property
    def hb(self) -> str:
        return self._k("hb")

    @property
    def st(self) -> str:
        return self._k("st")

    @property
    def cur(self) -> str:
        return self._k("cur")

    @property
    def rq(self) -> str:
        return self._k("rq")

    @property
    def skip(self) -> str:
        return self._k("skip")

    @property
    def active(self) -> str:
        return self._k("active")

    @property
    def bucket(self) -> str:
        return self._k("bucket")

    @property
    def log(self) -> str:
        return self._k("log")

    @property
    def audit(self) -> str:
        return self._k("audit")

    @property
    def stats(self) -> str:
        return self._k("stats")

    @property
    def fence(self) -> str:
        return self._k("fence")

    @property
    def fam(self) -> str:
        return self._k("fam")

    @property
    def tfam(self) -> str:
        return self._k("tfam")

    @property
    def fa(self) -> str:
        return self._k("fa")

    def rate_limit(self, client: str) -> str:
        return self._k(f"rl:{client}")
