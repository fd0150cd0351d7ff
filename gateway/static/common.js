"use strict";
/* What every page shares: its texts, formats, and calls to the JSON API. */
const WR = (() => {
  const M = JSON.parse(document.getElementById("i18n").textContent);
  const lang = document.body.dataset.lang;
  const event = document.body.dataset.event;
  const locale = lang === "fr" ? "fr-CA" : "en-CA";
  const timeFmt = new Intl.DateTimeFormat(locale, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const clockFmt = new Intl.DateTimeFormat(locale, { hour: "2-digit", minute: "2-digit" });
  const moneyFmt = new Intl.NumberFormat(locale, { style: "currency", currency: "CAD" });

  function t(key, vars) {
    let text = M[key] === undefined ? key : M[key];
    for (const [name, value] of Object.entries(vars || {})) text = text.split("{" + name + "}").join(String(value));
    return text;
  }
  const dayFmt = new Intl.DateTimeFormat(locale, { dateStyle: "long", timeStyle: "short" });
  function errorText(code, detail) {
    // A moment (a phase's opening) is shown as a date and time, not as ISO text.
    if (/^\d{4}-\d{2}-\d{2}T/.test(detail || "")) detail = dayFmt.format(new Date(detail));
    return M["err." + code] !== undefined ? t("err." + code, { detail: detail || "" }) : t("err.generic", { code });
  }
  function duration(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    const two = (n) => String(n).padStart(2, "0");
    return (h ? h + ":" + two(m) : String(m)) + ":" + two(r);
  }
  const money = (cents) => moneyFmt.format(cents / 100);
  const at = (iso) => clockFmt.format(new Date(iso));

  /* One call; never throws: {status, data, retryAfter, headers}. status 0 = the network failed. */
  async function api(method, path, options = {}) {
    const headers = Object.assign({ Accept: "application/json" }, options.headers || {});
    if (options.token) headers.Authorization = "Bearer " + options.token;
    let body;
    if (options.body !== undefined) { headers["Content-Type"] = "application/json"; body = JSON.stringify(options.body); }
    try {
      const response = await fetch(path, { method, headers, body, credentials: "same-origin", cache: "no-store" });
      const text = await response.text();
      const data = text ? JSON.parse(text) : {};
      return { status: response.status, data, retryAfter: Number(response.headers.get("Retry-After")) || 0, headers: response.headers };
    } catch (e) {
      return { status: 0, data: { error: "unavailable" }, retryAfter: 0, headers: new Headers() };
    }
  }

  function clearErrors(form) {
    form.querySelectorAll("[data-error]").forEach((el) => { el.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
  }
  /* Put an API error next to the field it concerns (or at the form's foot). */
  function showError(form, data) {
    const field = (data.field || "").split(".")[0];
    const slot = form.querySelector('[data-error="' + field + '"]') || form.querySelector('[data-error=""]');
    const text = errorText(data.error, data.detail);
    if (slot) slot.textContent = text;
    const input = field && form.elements[field];
    if (input && input.setAttribute) {
      input.setAttribute("aria-invalid", "true");
      if (slot) { slot.id = slot.id || "err-" + form.id + "-" + field; input.setAttribute("aria-describedby", slot.id); }
      input.focus();
    }
    return text;
  }
  const tokenKey = "wr_admission_" + event;

  /* Leave the line or end the session (DELETE the ticket). During an outage (a 5xx, no
     answer) it is tried again, backing off from 2 s to a minute, until the gateway
     answers: a parent who left must not keep a place or a slot. onWait(seconds) says
     when the next try is; onDone() once it is over (a 404: already gone). */
  function leave(ticketId, onDone, onWait) {
    let tries = 0;
    const attempt = async () => {
      const reply = await api("DELETE", "/api/v1/events/" + event + "/tickets/" + encodeURIComponent(ticketId));
      if (reply.status && reply.status < 500) { onDone(); return; }
      tries += 1;
      const wait = Math.min(60000, (reply.retryAfter ? reply.retryAfter * 1000 : 2000) * 2 ** Math.min(tries - 1, 5));
      onWait(Math.round(wait / 1000));
      setTimeout(attempt, Math.round(wait * (0.85 + Math.random() * 0.3)));
    };
    attempt();
  }
  /* The ticket an admission token was signed for (its "sub" claim). */
  function ticketOf(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(part + "=".repeat((4 - part.length % 4) % 4))).sub || "";
    } catch (e) { return ""; }
  }
  return { t, errorText, duration, money, at, timeFmt, api, clearErrors, showError, lang, event, tokenKey, leave, ticketOf };
})();
