"use strict";
/* The registration steps (Lévis guide 1-5) on top of the cart API, and the receipt
   reprint form. All state lives on the server: every step change (links, the browser's
   back and forward buttons) reads the cart again, so nothing is lost or duplicated; a
   payment attempt keeps one idempotency key until its outcome is known. */
(async () => {
  const { t, api, event, money, at, duration, clearErrors, showError, errorText } = WR;
  const $ = (id) => document.getElementById(id);
  const base = "/api/v1/events/" + event;
  const receiptKey = "wr_receipt_" + event;
  const payKey = "wr_paykey_" + event;
  let token = "";
  let cardToken = ""; // the payment provider's one-time token for the card typed in its frame
  let browsing = false; // no admission: the catalogue only, places as levels
  let cart = null;
  let holdTimer = 0;
  let pendingTimer = 0;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }
  const status = (text) => { $("status").hidden = !text; $("status").textContent = text || ""; };
  const call = (method, path, body, headers) => api(method, base + path, { token, body, headers });
  const fields = (form) => Object.fromEntries(new FormData(form).entries());

  function ages(a) {
    if (a.class_levels.length) return a.class_levels[0] + "–" + a.class_levels[a.class_levels.length - 1];
    return a.min_age >= 0 ? a.min_age + "–" + a.max_age : "";
  }

  /* -- the receipt (also the reprint page) ------------------------------------------ */
  function renderReceipt(r, target) {
    // An order of a "requests" event: each booking "En attente", then "Réservé" or
    // "Annulé" (with why) once the team has allocated the places.
    const order = r.payment_status === "ordered" || r.payment_status === "allocated";
    const lines = el("tbody");
    for (const line of r.lines) {
      lines.append(el("tr", {},
        el("td", { text: line.participant_name }),
        el("td", { text: line.activity.title }),
        el("td", { text: line.activity.starts_on + " – " + line.activity.ends_on }),
        el("td", { text: money(line.price_cents) }),
        order ? el("td", { class: "booking-" + line.status,
          text: t("booking." + line.status) + (line.reason ? " — " + t("reason." + line.reason) : "") }) : null));
    }
    const deferred = r.payment_status === "deferred";
    const title = order ? t("receipt." + r.payment_status) : deferred ? t("receipt.confirmed") : t("receipt.title");
    const amounts = order
      ? el("p", { text: r.payment_status === "ordered" ? t("receipt.order_pending") : t("receipt.due") + " : " + money(r.amount_due_cents) })
      : deferred ? el("p", { text: t("receipt.due") + " : " + money(r.amount_due_cents) })
        : el("p", { text: t("receipt.paid") + " : " + money(r.paid_cents) + " (" + r.card_brand + " ****" + r.card_last4 + ")" });
    target.replaceChildren(
      el("h2", { text: title }),
      el("p", {}, t("receipt.cart_number") + " : ", el("strong", { id: "receipt-cart-number", text: r.cart_number })),
      el("p", {}, t("receipt.owner_number") + " : ", el("strong", { id: "receipt-owner-number", text: r.owner_number })),
      el("p", { class: "muted", text: t("receipt.keep") }),
      el("p", { text: t("receipt.payer") + " : " + r.payer_name + " — " + r.issued_at }),
      el("table", {}, el("thead", {}, el("tr", {},
        el("th", { text: t("search.participant") }), el("th", { text: t("col.activity") }),
        el("th", { text: t("col.dates") }), el("th", { text: t("col.price") }),
        order ? el("th", { text: t("col.booking") }) : null)), lines),
      el("p", { text: t("receipt.total") + " : " + money(r.total_cents) + (order ? " — " + t("receipt.modules", { count: r.lines.length }) : "") }),
      amounts,
      el("p", { class: "muted", text: t("receipt.email") }),
      el("button", { type: "button", onclick: () => window.print(), text: t("receipt.print") }));
  }

  const reprint = $("reprint-form");
  if (reprint) {
    reprint.addEventListener("submit", async (e) => {
      e.preventDefault();
      clearErrors(reprint);
      const reply = await api("POST", "/api/v1/receipts/lookup", { body: fields(reprint) });
      if (reply.status === 200) renderReceipt(reply.data, $("receipt"));
      else showError(reprint, reply.data);
    });
    return;
  }

  /* -- the steps ------------------------------------------------------------------ */
  function step() {
    if (browsing) return "search";
    if (sessionStorage.getItem(receiptKey)) return "receipt";
    const wanted = location.hash.slice(1);
    return ["search", "cart", "payer", "pay"].includes(wanted) ? wanted : "search";
  }

  async function show() {
    const current = step();
    document.querySelectorAll("[data-step-panel]").forEach((panel) => { panel.hidden = panel.dataset.stepPanel !== current; });
    document.querySelectorAll("[data-step]").forEach((link) => {
      if (link.dataset.step === current) link.setAttribute("aria-current", "step"); else link.removeAttribute("aria-current");
    });
    if (current === "receipt") {
      renderReceipt(JSON.parse(sessionStorage.getItem(receiptKey)), $("receipt"));
      $("hold").textContent = "";
      return;
    }
    if (!browsing) await refresh();
    if (current === "search" && !$("parks").children.length) await facets();
  }

  async function refresh() {
    const reply = await call("GET", "/cart");
    if (reply.status === 401) { lockedOut(); return; }
    if (reply.status === 200) render(reply.data);
    else status(errorText(reply.data.error));
  }

  // Done without paying: the session ends, the held places go back at once (tried again
  // during an outage until the gateway answers).
  $("leave-session").addEventListener("click", () => {
    const ticketId = WR.ticketOf(token);
    if (!ticketId) return;
    $("leave-session").disabled = true;
    $("leaving").hidden = false;
    $("leaving").textContent = t("wr.leaving");
    WR.leave(ticketId, () => {
      sessionStorage.removeItem(WR.tokenKey);
      $("leaving").textContent = t("reg.left");
    }, (seconds) => { $("leaving").textContent = t("wr.leave_retry", { seconds }); });
  });

  function lockedOut() {
    $("app").hidden = true;
    $("no-token").hidden = false;
  }

  function render(next) {
    cart = next;
    status("");
    const members = cart.members || [];
    $("family-done").hidden = !cart.client_number;
    $("family-done").textContent = cart.client_number ? t("family.identified", { client: cart.client_number }) : "";
    $("family-not-validated").hidden = !cart.client_number || cart.family_validated !== false;
    document.querySelectorAll("select.members").forEach((select) => fill(select, members));
    document.querySelectorAll("select.payers").forEach((select) => fill(select, members.filter((m) => m.can_pay)));
    const payer = $("payer-form");
    if (cart.client_number && !payer.elements.client_number.value) payer.elements.client_number.value = cart.client_number;
    if (cart.payer) { payer.elements.member.value = cart.payer.member; payer.elements.email.value = cart.payer.email; }
    if (cart.conditions_accepted) $("conditions-form").elements.accepted.checked = true;
    $("payer-done").textContent = cart.payer ? t("payer.done", { name: cart.payer.name }) : "";
    renderItems();
    renderWaiting();
    renderHold();
    $("pay-deferred").hidden = !cart.payment_deferred || cart.takes_requests;
    $("pay-requests").hidden = !cart.takes_requests;
    $("card-fields").hidden = cart.payment_deferred;
    loadCardFrame();
    $("pay-button").textContent = cart.takes_requests ? t("pay.order")
      : cart.payment_deferred ? t("pay.confirm") : t("pay.submit", { total: money(cart.total_cents) });
    $("extend").disabled = cart.extension_used || !cart.items.length;
    $("extend").textContent = cart.extension_used ? t("reg.extended") : t("reg.extend");
  }

  function fill(select, members) {
    const chosen = select.value;
    // A member added online stays on the record, marked until the office validates it.
    select.replaceChildren(...members.map((m) => el("option", { value: m.id,
      text: m.first_name + " " + m.last_name + (m.pending_validation ? " (" + t("member.pending") + ")" : "") })));
    if (members.some((m) => m.id === chosen)) select.value = chosen;
  }

  // Québec FAQ 6: the family's place on each waiting list.
  function renderWaiting() {
    const places = cart.waiting || [];
    $("waiting-places").hidden = !places.length;
    $("waiting-list").replaceChildren(...places.map((w) => el("li", {
      text: w.position ? t("waiting.place", { name: w.participant_name, activity: w.activity_title, position: w.position })
        : t("waiting.offered", { name: w.participant_name, activity: w.activity_title, time: at(w.offered_until) }),
    })));
  }

  function renderItems() {
    const list = $("cart-items");
    list.replaceChildren(...cart.items.map((item) => el("li", {},
      item.participant_name + " — " + item.activity.title + " (" + item.activity.starts_on + ") — " + money(item.activity.price_cents),
      cart.status === "open" ? el("button", {
        type: "button", "aria-label": t("cart.remove") + " " + item.participant_name + " " + item.activity.title,
        onclick: () => remove(item), text: t("cart.remove"),
      }) : null)));
    if (!cart.items.length) list.append(el("li", { text: t("cart.empty") }));
    $("cart-total").textContent = t("cart.total", { total: money(cart.total_cents) })
      + (cart.one_child_per_order ? " · " + t("cart.modules", { count: cart.modules || 0 }) : "");
    $("released").hidden = !cart.released.length;
    $("released").textContent = cart.released.length
      ? t("reg.expired") + " " + cart.released.map((i) => i.participant_name + " — " + i.activity.title).join("; ") : "";
  }

  function renderHold() {
    clearInterval(holdTimer);
    const hold = $("hold");
    if (cart.status === "paying") {
      // FAQ 11: the cart's number, to give support if the cart does not come back.
      hold.textContent = t("reg.locked", { time: at(cart.locked_until) }) + " " + t("reg.locked_number", { number: cart.cart_number });
      return;
    }
    if (!cart.hold_expires_at) { hold.textContent = ""; return; }
    const until = Date.parse(cart.hold_expires_at);
    const tickHold = () => {
      const left = until - Date.now();
      hold.textContent = t("reg.hold", { time: at(cart.hold_expires_at), remaining: duration(left) });
      if (left <= 0) { clearInterval(holdTimer); refresh(); }
    };
    tickHold();
    holdTimer = setInterval(tickHold, 1000);
  }

  async function facets() {
    const reply = await call("GET", "/catalogue?facets=only");
    if (reply.status !== 200) { status(errorText(reply.data.error)); return; }
    const box = (name, values) => values.map((value) => el("label", {},
      el("input", { type: "checkbox", name, value }), value));
    $("parks").replaceChildren(...box("park", reply.data.parks));
    $("age-groups").replaceChildren(...box("age_group", reply.data.age_groups));
  }

  /* -- forms ------------------------------------------------------------------------ */
  function on(id, handler) {
    const form = $(id);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const button = form.querySelector("button:not([type=button])");
      if (button.disabled) return;
      button.disabled = true;
      clearErrors(form);
      try { await handler(form); } finally { button.disabled = false; }
    });
  }
  async function send(form, method, path, body, after) {
    const reply = await call(method, path, body);
    if (reply.status === 401) { lockedOut(); return null; }
    if (reply.status >= 400) { showError(form, reply.data); return null; }
    const next = reply.data.cart || (reply.data.items ? reply.data : null);
    if (next) render(next);
    if (after) after(reply.data);
    return reply.data;
  }

  on("family-form", (form) => send(form, "POST", "/cart/family", fields(form)));

  on("search-form", async (form) => {
    const query = new URLSearchParams(new FormData(form)).toString();
    const reply = await call("GET", "/catalogue?" + query);
    if (reply.status !== 200) { showError(form, reply.data); return; }
    renderResults(reply.data.activities);
  });

  function renderResults(activities) {
    const results = $("results");
    if (!activities.length) { results.replaceChildren(el("p", { text: t("search.none") })); return; }
    if (browsing) { renderBrowsed(activities); return; }
    const who = el("select", { id: "participant", class: "members" });
    fill(who, (cart && cart.members) || []);
    const rows = activities.map((a) => {
      const note = el("span", { class: "outcome", role: "status" });
      const full = a.places_left <= 0;
      const action = el("button", {
        type: "button", "data-activity": a.id,
        "aria-label": (full ? t("search.waiting_list") : t("search.add")) + " — " + a.title,
        text: full ? t("search.waiting_list") : t("search.add"),
        onclick: () => (full ? waitingList(a, who.value, note) : add(a, who.value, note, action)),
      });
      return el("tr", {},
        el("td", { text: a.title }), el("td", { text: a.starts_on + " – " + a.ends_on }),
        el("td", { text: money(a.price_cents) }),
        el("td", { text: full ? t("search.full") : String(a.places_left) }),
        el("td", { text: ages(a) }), el("td", {}, action, " ", note));
    });
    results.replaceChildren(
      el("label", {}, t("search.participant"), who),
      el("table", {}, el("thead", {}, el("tr", {}, ...["col.activity", "col.dates", "col.price", "col.places", "col.ages", "col.add"]
        .map((k) => el("th", { text: t(k) })))), el("tbody", {}, ...rows)));
  }

  function renderBrowsed(activities) {
    const rows = activities.map((a) => el("tr", {},
      el("td", { text: a.title }), el("td", { text: a.starts_on + " – " + a.ends_on }),
      el("td", { text: money(a.price_cents) }), el("td", { text: t("avail." + a.availability) }),
      el("td", { text: ages(a) })));
    $("results").replaceChildren(el("table", {}, el("thead", {}, el("tr", {},
      ...["col.activity", "col.dates", "col.price", "col.places", "col.ages"].map((k) => el("th", { text: t(k) })))),
      el("tbody", {}, ...rows)));
  }

  async function add(activity, participant, note, button) {
    button.disabled = true;
    const reply = await call("POST", "/cart/items", { participant, activity_ids: [activity.id] });
    button.disabled = false;
    if (reply.status === 401) { lockedOut(); return; }
    if (reply.status >= 400) { note.textContent = errorText(reply.data.error, reply.data.detail); return; }
    render(reply.data.cart);
    const outcome = reply.data.outcomes[0];
    if (outcome.outcome === "held") note.textContent = t("search.held");
    else if (outcome.outcome === "full") {
      note.textContent = t("search.full");
      note.append(" ", el("button", { type: "button", text: t("search.waiting_list"), onclick: () => waitingList(activity, participant, note) }));
    } else note.textContent = errorText(outcome.code, outcome.detail);
  }

  async function waitingList(activity, participant, note) {
    const reply = await call("POST", "/cart/waiting-list", { activity_id: activity.id, participant });
    note.textContent = reply.status === 201 ? t("search.on_list", { position: reply.data.position })
      : errorText(reply.data.error, reply.data.detail);
  }

  async function remove(item) {
    const path = "/cart/items/" + encodeURIComponent(item.activity.id) + "/" + encodeURIComponent(item.participant);
    const reply = await call("DELETE", path);
    if (reply.status === 200) render(reply.data); else if (reply.status === 401) lockedOut(); else refresh();
  }

  $("extend").addEventListener("click", async () => {
    const reply = await call("POST", "/cart/extension");
    $("extend-error").textContent = reply.status === 200 ? "" : errorText(reply.data.error);
    if (reply.status === 200) render(reply.data);
  });

  on("duplicate-form", (form) => send(form, "POST", "/cart/duplicate", { participant: form.elements.participant.value },
    (data) => status(data.outcomes.map((o) => o.activity_id + " : " + (o.outcome === "held" ? t("search.held") : errorText(o.code || o.outcome, o.detail))).join(" · "))));

  on("member-form", (form) => {
    const body = fields(form);
    body.class_level = body.class_level === "" ? null : Number(body.class_level);
    return send(form, "POST", "/cart/members", body, () => form.reset());
  });

  on("payer-form", (form) => send(form, "PUT", "/cart/payer", fields(form)));

  on("conditions-form", (form) => send(form, "PUT", "/cart/conditions", { accepted: form.elements.accepted.checked },
    () => { location.hash = "#pay"; }));

  on("pay-form", async (form) => {
    // One key per attempt, kept until its outcome is known: a double click, a reload or a
    // back-and-forth during payment never charges twice.
    let key = sessionStorage.getItem(payKey);
    if (!key) { key = crypto.randomUUID(); sessionStorage.setItem(payKey, key); }
    if (!(cart && cart.payment_deferred) && !cardToken) {
      form.querySelector('[data-error="card_token"]').textContent = errorText("card_required");
      return;
    }
    const body = cart && cart.payment_deferred ? {} : { card_token: cardToken };
    const reply = await call("POST", "/cart/checkout", body, { "Idempotency-Key": key });
    if (reply.status === 401) { lockedOut(); return; }
    if (reply.status >= 400) {
      if (reply.status < 500) sessionStorage.removeItem(payKey); // refused before any charge
      showError(form, reply.data);
      return;
    }
    const result = reply.data;
    if (result.outcome === "paid" || result.outcome === "confirmed" || result.outcome === "ordered") {
      sessionStorage.removeItem(payKey);
      sessionStorage.setItem(receiptKey, JSON.stringify(result.receipt));
      cardToken = "";
      form.reset();
      location.hash = "#receipt";
      show();
    } else if (result.outcome === "declined") {
      sessionStorage.removeItem(payKey);
      render(result.cart);
      form.querySelector('[data-error=""]').textContent = t("pay.declined", { reason: errorText(result.decline_reason) });
    } else {
      render(result.cart);
      form.querySelector('[data-error=""]').textContent = t("pay.pending", { time: at(result.cart.locked_until) });
      clearInterval(pendingTimer);
      pendingTimer = setInterval(async () => {
        await refresh();
        if (cart && cart.status !== "paying") {
          clearInterval(pendingTimer);
          sessionStorage.removeItem(payKey);
          if (cart.status === "paid") status(t("receipt.title") + " — " + t("receipt.cart_number") + " " + cart.cart_number);
        }
      }, 3000);
    }
  });

  /* -- the card: typed on the payment provider's own page (an iframe of its origin),
     which hands this page a one-time token, never the card ------------------------- */
  const fieldsOrigin = document.body.dataset.fields;
  function loadCardFrame() {
    const frame = $("card-frame");
    if (!frame || frame.src || !fieldsOrigin || (cart && cart.payment_deferred)) return;
    frame.src = fieldsOrigin + "/fields?lang=" + WR.lang + "&origin=" + encodeURIComponent(location.origin);
  }
  window.addEventListener("message", (e) => {
    if (e.origin !== fieldsOrigin || !e.data || typeof e.data !== "object") return;
    const form = $("pay-form");
    clearErrors(form);
    if (e.data.type === "waitroom-card-token") {
      cardToken = String(e.data.token);
      $("card-ready").textContent = t("pay.card_ready", { brand: e.data.brand, last4: e.data.last4 });
    } else if (e.data.type === "waitroom-card-error") {
      cardToken = "";
      $("card-ready").textContent = "";
      showError(form, { error: e.data.error, field: e.data.field });
    }
  });

  /* -- start ------------------------------------------------------------------------ */
  // A waiting list's offer (Québec FAQ 6): the email's link carries its secret in the
  // fragment (never sent in a URL); claimed, the seat is held in the family's own cart.
  if (location.hash.startsWith("#offer=")) {
    const offer = decodeURIComponent(location.hash.slice("#offer=".length));
    history.replaceState(null, "", location.pathname + location.search + "#cart");
    const claimed = await api("POST", base + "/offers/claim", { body: { token: offer } });
    if (claimed.status === 200) {
      sessionStorage.removeItem(receiptKey);
      sessionStorage.setItem(WR.tokenKey, JSON.stringify(claimed.data.admission));
    } else {
      $("offer-error").hidden = false;
      $("offer-error").textContent = errorText(claimed.data.error);
    }
  }
  const stored = sessionStorage.getItem(WR.tokenKey);
  token = stored ? JSON.parse(stored).token : "";
  if (!token && !sessionStorage.getItem(receiptKey)) {
    // Not admitted: the catalogue may be open to browse (days before the night).
    const open = await api("GET", base + "/catalogue?facets=only");
    if (open.status !== 200) { lockedOut(); return; }
    browsing = true;
    document.querySelectorAll("[data-admitted-only]").forEach((node) => { node.hidden = true; });
    $("browse-note").hidden = false;
  }
  $("app").hidden = false;
  window.addEventListener("hashchange", show);
  show();
})();
