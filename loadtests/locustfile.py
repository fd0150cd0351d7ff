"""Opening night, as parents do it: join the waiting room, poll as the page does, some fall
asleep and lose their priority, and the admitted ones register and pay.

Run by ``make drill`` (``loadtests/drill.py``) against a stack it starts, or by hand,
distributed, against a remote stack (see ``loadtests/README.md``). Configured by
environment variables (``DRILL_*``, below). Each parent appends one JSON line about its
night (times, predicted and actual admission, outcome) to ``DRILL_OUT/parents-<pid>.jsonl``
for the report. Self-contained on purpose: Locust runs on gevent, so nothing from the
project (asyncio) is imported here.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import random
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import gevent
from locust import FastHttpUser, constant, events, task
from locust.exception import StopUser

EVENT = os.environ.get("DRILL_EVENT", "drill")
OUT = Path(os.environ.get("DRILL_OUT", "drill-out"))
SLEEP_SHARE = float(os.environ.get("DRILL_SLEEP_SHARE", "0.1"))
SLEEP_S = float(os.environ.get("DRILL_SLEEP_S", "25"))
DECLINE_SHARE = float(os.environ.get("DRILL_DECLINE_SHARE", "0.2"))
FAMILY_PREFIX = os.environ.get("DRILL_FAMILY_PREFIX", "D")
ACTIVITIES = [a for a in os.environ.get("DRILL_ACTIVITIES", "").split(",") if a]
PARENTS = int(os.environ.get("DRILL_PARENTS", "0"))  # this process's share; 0: no limit
API = f"/api/v1/events/{EVENT}"
APPROVE = "4242 4242 4242 4242"
DECLINE = "4000 0000 0000 0002"

_numbers = itertools.count()
_finished = 0
_records: Any = None
# Per second of the night: [requests, failures, 5xx answers, no connection, total ms],
# written to DRILL_OUT/requests-<pid>.json when Locust quits (the fault drill's budget).
_seconds: dict[int, list[int]] = {}
# Each request slower than SLOW_MS: [sent at (wall clock), method, name, status, ms],
# written to DRILL_OUT/slow-<pid>.json (the report places them in the fault windows).
SLOW_MS = int(os.environ.get("DRILL_SLOW_MS", "5000"))
_slow: list[list[Any]] = []


def _family_index() -> int:
    """A family per parent: unique across Locust workers (index offset by worker)."""
    worker = int(os.environ.get("DRILL_WORKER_INDEX", "0"))
    workers = int(os.environ.get("DRILL_WORKERS", "1"))
    return next(_numbers) * workers + worker


_begun = itertools.count(1)


def _started() -> int:
    """How many parents this process has started, this one included."""
    return next(_begun)


def _record(entry: dict[str, Any]) -> None:
    global _records
    if _records is None:
        OUT.mkdir(parents=True, exist_ok=True)
        _records = (OUT / f"parents-{os.getpid()}.jsonl").open("a", encoding="utf-8")
    _records.write(json.dumps(entry) + "\n")
    _records.flush()


def _issued_at(token: str) -> float:
    """The admission time the server signed into the token (its ``iat``)."""
    payload = token.split(".")[1]
    return float(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["iat"])


class Parent(FastHttpUser):
    wait_time = constant(0)

    def _backoff(self, attempt: int, retry_after: str | None) -> None:
        first = float(retry_after) if retry_after else 1.0
        gevent.sleep(min(30.0, first * 2 ** min(attempt, 5)) * random.uniform(0.85, 1.15))

    def _join(self) -> dict[str, Any]:
        for attempt in itertools.count():
            with self.client.post(API + "/tickets", name="join", catch_response=True) as r:
                if r.status_code in (200, 201):
                    return dict(r.json())
                if r.status_code in (429, 503):
                    r.success()  # a throttle answer is the contract, not a failure
                    self._backoff(attempt, r.headers.get("Retry-After"))
                    continue
                if r.status_code == 0 or r.status_code >= 500:  # the page retries
                    r.failure(f"join {r.status_code or 'no connection'}")
                    self._backoff(attempt, None)
                    continue
                r.failure(f"join {r.status_code}")
                raise StopUser()
        raise StopUser()

    def _wait(self, entry: dict[str, Any]) -> dict[str, Any] | None:
        """Polls as the waiting page does: any answer but 200 (a 503, a load balancer's
        502 or 504, no connection) is tried again after a back-off; 404 joins again.

        ``silent_s``, at the first requeue: the longest the server can have gone without
        hearing from this parent before it was skipped (the report compares it with the
        heartbeat timeout). Each silence runs from sending a poll the server answered to
        the next answer; the longer of the last two counts, because a heartbeat reaches
        the leader up to a flush later than the poll's answer (a sleeper who wakes just
        as its turn comes is skipped though its first poll was answered)."""
        heard_from = time.time()  # sent a request the server answered (a heartbeat)
        silences = [0.0, 0.0]
        ticket = self._join()
        entry.update(ticket_id=ticket["ticket_id"], arrival=ticket.get("arrival"))
        sleeper = random.random() < SLEEP_SHARE
        entry["sleeper"] = sleeper
        body = ticket
        failures = 0
        last_position: int | None = None
        while True:
            status = body["status"]
            position = body.get("position")
            if body.get("requeued"):
                last_position = None  # a requeued ticket starts a new line
            elif status == "waiting" and isinstance(position, int):
                if last_position is not None and position > last_position:
                    entry["rose"] = max(entry.get("rose", 0), position - last_position)
                last_position = position
            if status == "waiting" and entry.get("predicted_at") is None and body.get("eta_at"):
                entry["predicted_at"] = datetime.fromisoformat(body["eta_at"]).timestamp()
                entry["predicted_when"] = time.time()
                entry["first_position"] = body["position"]
            if body.get("requeued") and not entry.get("requeued"):
                entry["requeued"] = True
                entry["silent_s"] = round(max(silences), 1)
            if status == "admitted":
                return dict(body["admission"])
            if status in ("done", "closed"):
                entry["outcome"] = status
                return None
            if sleeper and status == "waiting" and not entry.get("slept"):
                entry["slept"] = True  # the computer goes to sleep: no heartbeat for a while
                gevent.sleep(SLEEP_S)
            else:
                gevent.sleep(body["poll_after_ms"] / 1000 * random.uniform(0.85, 1.15))
            url = f"{API}/tickets/{ticket['ticket_id']}"
            if last_position is not None:  # as the page: the position it showed last
                url += f"?seen={last_position}"
            sent = time.time()
            with self.client.get(url, name="poll", catch_response=True) as r:
                if r.status_code == 200:
                    body = r.json()
                    failures = 0
                    silences = [silences[-1], time.time() - heard_from]
                    heard_from = sent
                elif r.status_code in (429, 503):
                    r.success()
                    failures += 1
                    self._backoff(failures, r.headers.get("Retry-After"))
                elif r.status_code == 0 or r.status_code >= 500:  # the page retries
                    r.failure(f"poll {r.status_code or 'no connection'}")
                    failures += 1
                    self._backoff(failures, None)
                else:
                    r.failure(f"poll {r.status_code}")
                    entry["outcome"] = f"poll_{r.status_code}"
                    return None

    def _call(self, method: str, path: str, name: str, token: str, **kw: Any) -> Any:
        """One step of the registration page. A 5xx (or no answer) shows the parent an
        error and they press the button again, a few seconds later, a few times."""
        for attempt in range(4):
            if attempt:
                gevent.sleep(2 * random.uniform(0.85, 1.15))
            answer = self._call_once(method, path, name, token, **kw)
            if answer is not None:
                return answer
        return None

    def _call_once(self, method: str, path: str, name: str, token: str, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}", **kw.get("headers", {})}
        kw = {k: v for k, v in kw.items() if k != "headers"}
        with self.client.request(
            method, API + path, name=name, headers=headers, catch_response=True, **kw
        ) as r:
            if r.status_code >= 500 or r.status_code == 0:
                r.failure(f"{name} {r.status_code or 'no connection'}")
                return None
            if r.status_code >= 400:
                r.success()  # a refusal the page shows the parent (full, declined, ...)
            try:
                return r.json()
            except ValueError:
                r.failure(f"{name}: not JSON")
                return None

    def _register(self, token: str, family: int, entry: dict[str, Any]) -> None:
        client = f"{FAMILY_PREFIX}{family:06d}"
        cart = self._call(
            "POST", "/cart/family", "cart/family", token,
            json={"client_number": client, "phone": _phone(family)},
        )  # fmt: skip
        if not cart or "error" in cart:
            entry["outcome"] = "identify_failed"
            return
        child = next(m["id"] for m in cart["members"] if m["relationship"] == "child")
        adult = next(m["id"] for m in cart["members"] if m["relationship"] == "responsible")
        weeks = random.sample(ACTIVITIES, k=min(2, len(ACTIVITIES)))
        added = self._call(
            "POST", "/cart/items", "cart/items", token,
            json={"participant": child, "activity_ids": weeks},
        )  # fmt: skip
        held = [o for o in (added or {}).get("outcomes", []) if o["outcome"] == "held"]
        entry["held"] = len(held)
        entry["full"] = sum(o["outcome"] == "full" for o in (added or {}).get("outcomes", []))
        if not held:
            entry["outcome"] = "nothing_left"
            return
        self._call(
            "PUT", "/cart/payer", "cart/payer", token,
            json={"member": adult, "client_number": client, "phone": _phone(family),
                  "email": f"{client.lower()}@example.org"},
        )  # fmt: skip
        self._call("PUT", "/cart/conditions", "cart/conditions", token, json={"accepted": True})
        cards = [DECLINE, APPROVE] if random.random() < DECLINE_SHARE else [APPROVE]
        for card in cards:
            key = str(uuid.uuid4())  # the page keeps it until the outcome is known
            # A 5xx: the parent presses "pay" again, under the same key (_call).
            paid = self._call(
                "POST", "/cart/checkout", "cart/checkout", token,
                headers={"Idempotency-Key": key},
                json={"card": {"number": card, "expiry": "12/30", "cvv": "123"}},
            )  # fmt: skip
            outcome = (paid or {}).get("outcome") or (paid or {}).get("error", "error")
            if outcome == "pending":  # the page reads its cart until the payment settles
                outcome = self._settled(token)
            entry.setdefault("checkouts", []).append(outcome)
            if outcome != "declined":
                break
        entry["outcome"] = entry["checkouts"][-1]

    def _leave(self, ticket_id: str) -> None:
        """End the session as the page does, trying again while the gateway cannot."""
        for attempt in range(5):
            with self.client.delete(
                f"{API}/tickets/{ticket_id}", name="leave", catch_response=True
            ) as r:
                if r.status_code < 500 and r.status_code != 0:
                    return
                r.failure(f"leave {r.status_code or 'no connection'}")
            self._backoff(attempt, r.headers.get("Retry-After"))

    def _settled(self, token: str) -> str:
        """What a pending payment became, read as the page does (its cart, every 3 s)."""
        for _ in range(60):
            gevent.sleep(3)
            cart = self._call("GET", "/cart", "cart", token)
            if cart and cart.get("error") == "session_ended":
                return "paid"  # ended by the gateway when it found the cart paid
            if cart and cart.get("status") in ("paid", "confirmed"):
                return str(cart["status"])
            if cart and cart.get("status") == "open":
                return "declined"  # unlocked: nothing was charged
        return "pending"

    @task
    def night(self) -> None:
        global _finished
        if PARENTS and _started() > PARENTS:
            raise StopUser()  # Locust tops the user count up as parents finish: no more
        family = _family_index()
        entry: dict[str, Any] = {"family": family, "joined_at": time.time()}
        try:
            admission = self._wait(entry)
            if admission is not None:
                entry["admitted_at"] = _issued_at(admission["token"])
                entry["seen_admitted_at"] = time.time()
                self._register(admission["token"], family, entry)
                if entry.get("outcome") not in ("paid", "confirmed"):
                    # Done without paying (nothing left, say): the page ends the session,
                    # so the slot goes to the next parent instead of waiting for its TTL.
                    self._leave(entry["ticket_id"])
        finally:
            entry["finished_at"] = time.time()
            _record(entry)
            _finished += 1
            if PARENTS and _finished >= PARENTS and self.environment.runner is not None:
                self.environment.runner.quit()  # everyone's night is over: stop by itself
        raise StopUser()


def _phone(family: int) -> str:
    return f"418 55{family // 10000 % 10}-{family % 10000:04d}"


@events.request.add_listener
def _count(
    response: Any = None,
    exception: Any = None,
    response_time: float = 0,
    request_type: str = "",
    name: str = "",
    **_: Any,
) -> None:
    status = int(getattr(response, "status_code", 0) or 0)
    if response_time >= SLOW_MS:
        now = time.time()
        _slow.append(
            [round(now - response_time / 1000, 3), request_type, name, status, int(response_time)]
        )
    counts = _seconds.setdefault(int(time.time()), [0, 0, 0, 0, 0])
    counts[0] += 1
    counts[1] += exception is not None
    counts[2] += status >= 500
    counts[3] += status == 0
    counts[4] += int(response_time)


@events.quitting.add_listener
def _close(**_: Any) -> None:
    if _records is not None:
        _records.close()
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"requests-{os.getpid()}.json"
    path.write_text(json.dumps({str(k): v for k, v in sorted(_seconds.items())}), "utf-8")
    (OUT / f"slow-{os.getpid()}.json").write_text(json.dumps(_slow), "utf-8")
