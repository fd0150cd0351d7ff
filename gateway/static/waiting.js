"use strict";
/* The waiting room: join, then keep the ticket's priority alive by polling at the pace
   the server asks (with jitter), back off when it is busy, catch up when the tab is seen
   again, keep the screen awake where the browser allows, and go on when admitted. */
(() => {
  const { t, api, event, duration, at, timeFmt } = WR;
  const $ = (id) => document.getElementById(id);
  const base = "/api/v1/events/" + event;
  let offset = 0;          // the server's clock minus this device's
  let info = null;         // the event (schedule, draw)
  let ticket = null;
  let firstLine = null;    // the line length when first seen: the progress bar's 0 %
  let timer = 0, countdownTimer = 0, failures = 0, due = 0;
  let wakeLock = null;

  const now = () => Date.now() + offset;
  const jitter = (ms) => Math.round(ms * (0.85 + Math.random() * 0.3));
  const say = (text) => { $("wr-message").textContent = text; };

  async function keepAwake() {
    if (!("wakeLock" in navigator) || document.visibilityState !== "visible" || wakeLock) return;
    try {
      wakeLock = await navigator.wakeLock.request("screen");
      wakeLock.addEventListener("release", () => { wakeLock = null; });
    } catch (e) { wakeLock = null; }
  }

  function countdown(label, iso, then) {
    clearInterval(countdownTimer);
    const target = Date.parse(iso);
    $("wr-countdown").hidden = false;
    $("wr-countdown-label").textContent = label;
    const step = () => {
      const left = target - now();
      $("wr-countdown-value").textContent = duration(left);
      if (left <= 0) { clearInterval(countdownTimer); $("wr-countdown").hidden = true; if (then) then(); }
    };
    step();
    countdownTimer = setInterval(step, 1000);
  }

  function later(fn, ms) {
    clearTimeout(timer);
    due = Date.now() + ms;
    timer = setTimeout(fn, ms);
  }

  function busy(reply, retry) {
    failures += 1;
    const first = reply.retryAfter ? reply.retryAfter * 1000 : 2000;
    const wait = jitter(Math.min(60000, first * 2 ** Math.min(failures - 1, 5)));
    $("wr-busy").hidden = false;
    $("wr-busy").textContent = t("wr.busy", { seconds: Math.round(wait / 1000) });
    later(retry, wait);
  }

  async function start() {
    const reply = await api("GET", base);
    if (reply.status === 404) { say(t("wr.unknown_event")); return; }
    if (reply.status !== 200) { busy(reply, start); return; }
    info = reply.data;
    offset = Date.parse(info.now) - Date.now();
    if (info.draw && info.draw.commitment) {
      $("wr-draw").hidden = false;
      $("wr-commitment").textContent = info.draw.commitment;
    }
    if (info.state === "scheduled") {
      say(t("wr.scheduled", { time: at(info.waiting_room_opens_at) }));
      countdown(t("wr.opens_in"), info.waiting_room_opens_at, start);
      return;
    }
    if (info.state === "closed") { say(t("wr.closed")); return; }
    join();
  }

  /* Past its address's join limit (a carrier's shared address, a school's network), the
     page proves a little work instead of being turned away: a nonce whose SHA-256 with
     the challenge starts with `bits` zero bits (gateway/proof.py). */
  function zeroBits(digest) {
    let bits = 0;
    for (const byte of digest) {
      if (byte === 0) { bits += 8; continue; }
      return bits + Math.clz32(byte) - 24;
    }
    return bits;
  }
  async function solve(challenge, bits) {
    const encoder = new TextEncoder();
    for (let start = 0; ; start += 256) {
      const tries = [];
      for (let nonce = start; nonce < start + 256; nonce++) {
        tries.push(crypto.subtle.digest("SHA-256", encoder.encode(challenge + ":" + nonce)));
      }
      const digests = await Promise.all(tries);
      const found = digests.findIndex((d) => zeroBits(new Uint8Array(d)) >= bits);
      if (found >= 0) return String(start + found);
    }
  }

  async function join(proof) {
    const headers = proof ? { "X-Waitroom-Proof": proof } : undefined;
    const reply = await api("POST", base + "/tickets", { headers });
    if (reply.status === 200 || reply.status === 201) { settled(reply.data); return; }
    const challenge = reply.headers.get("X-Waitroom-Challenge");
    if (reply.status === 429 && challenge && !proof && window.crypto && crypto.subtle) {
      say(t("wr.proving"));
      const nonce = await solve(challenge, Number(reply.headers.get("X-Waitroom-Challenge-Bits")));
      join(challenge + ":" + nonce);
      return;
    }
    if (reply.status === 409 && reply.data.error === "closed") { say(t("wr.closed")); return; }
    if (reply.status === 409 && reply.data.error === "not_open") { start(); return; }
    busy(reply, join);
  }

  async function poll() {
    // Timers stop while the computer sleeps: a poll this late means it slept.
    if (Date.now() - due > 30000) $("wr-slept").hidden = false;
    // The position shown last: a gateway a moment behind another never shows a higher one.
    const seen = ticket.status === "waiting" && ticket.position && !ticket.requeued ? "?seen=" + ticket.position : "";
    const reply = await api("GET", base + "/tickets/" + ticket.ticket_id + seen);
    if (reply.status === 200) { settled(reply.data); return; }
    if (reply.status === 404 || reply.status === 400) { ticket = null; join(); return; }
    busy(reply, poll);
  }

  function settled(next) {
    failures = 0;
    $("wr-busy").hidden = true;
    ticket = next;
    show(next);
    if (next.status === "prequeue" || next.status === "waiting") later(poll, jitter(next.poll_after_ms));
  }

  /* One chance per family: before the draw, the family names itself on this ticket to
     enter the lottery (docs/draw.md); the page remembers it did. */
  const familyKey = "wr_family_" + event;
  function offerFamily(tk) {
    const form = $("wr-family");
    const done = sessionStorage.getItem(familyKey);
    const open = info.draw && info.draw.one_per_family && tk.status === "prequeue";
    form.hidden = !open || Boolean(done);
    $("wr-family-done").hidden = !open || !done;
    if (done) $("wr-family-done").textContent = done;
  }
  $("wr-family").addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = e.target;
    WR.clearErrors(form);
    const body = Object.fromEntries(new FormData(form).entries());
    const reply = await api("POST", base + "/tickets/" + ticket.ticket_id + "/family", { body });
    if (reply.status === 200) {
      sessionStorage.setItem(familyKey, t("fam.in_draw", { client: reply.data.client_number }));
      offerFamily(ticket);
    } else {
      WR.showError(form, reply.data);
    }
  });

  $("wr-leave").addEventListener("click", () => {
    if (!ticket) return;
    clearTimeout(timer);
    clearInterval(countdownTimer);
    $("wr-leave-row").hidden = true;
    $("wr-leaving").hidden = false;
    $("wr-leaving").textContent = t("wr.leaving");
    WR.leave(ticket.ticket_id, () => {
      ticket = null;
      $("wr-line").hidden = true;
      $("wr-leaving").textContent = t("wr.left");
      say("");
    }, (seconds) => { $("wr-leaving").textContent = t("wr.leave_retry", { seconds }); });
  });

  function show(tk) {
    offerFamily(tk);
    $("wr-leave-row").hidden = !(tk.status === "prequeue" || tk.status === "waiting");
    $("wr").setAttribute("aria-busy", "false");
    $("wr-updated").textContent = t("wr.updated", { time: timeFmt.format(new Date()) });
    $("wr-requeued").hidden = !tk.requeued;
    $("wr-line").hidden = tk.status !== "waiting";
    if (tk.status === "prequeue") {
      say(t("wr.prequeue", { time: at(info.opens_at) }));
      if (!countdownTimer || $("wr-countdown").hidden) {
        countdown(t("wr.draw_in"), info.opens_at, () => later(poll, jitter(1500)));
      }
    } else if (tk.status === "waiting") {
      clearInterval(countdownTimer);
      $("wr-countdown").hidden = true;
      say("");
      if (firstLine === null || tk.position > firstLine) firstLine = tk.position;
      $("wr-position").textContent = t("wr.position", { position: tk.position });
      $("wr-progress").value = firstLine > 1 ? Math.round(100 * (firstLine - tk.position) / (firstLine - 1)) : 100;
      if (tk.eta_at && tk.eta_seconds !== null) {
        const minutes = tk.eta_seconds / 60;
        $("wr-eta").textContent = t("wr.eta", {
          time: at(tk.eta_at), low: Math.max(0, Math.floor(minutes * 0.8)), high: Math.ceil(minutes * 1.3 + 1),
        });
      } else {
        $("wr-eta").textContent = t("wr.eta_unknown");
      }
    } else if (tk.status === "admitted") {
      clearInterval(countdownTimer);
      say(t("wr.admitted"));
      const admission = tk.admission;
      sessionStorage.setItem(WR.tokenKey, JSON.stringify(admission));
      const target = admission.redirect + (WR.lang === "en" ? "?lang=en" : "");
      $("wr-go").hidden = false;
      $("wr-go-link").href = target;
      location.assign(target);
    } else if (tk.status === "done") {
      say(t("wr.done"));
    } else if (tk.status === "closed") {
      say(t("wr.closed"));
    }
  }

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible") return;
    keepAwake();
    if (ticket && (ticket.status === "prequeue" || ticket.status === "waiting")) { clearTimeout(timer); poll(); }
  });
  keepAwake();
  start();
})();
