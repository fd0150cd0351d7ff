"use strict";
/* The sandbox provider's card fields: the card goes to the provider (this origin), and
   only a one-time token goes to the page that framed these fields, and to no other. */
(() => {
  const origin = document.body.dataset.origin;
  const form = document.getElementById("card");
  const status = document.getElementById("status");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    status.textContent = "";
    const body = JSON.stringify(Object.fromEntries(new FormData(form).entries()));
    let reply;
    try {
      reply = await fetch("/tokens", { method: "POST", headers: { "Content-Type": "application/json" }, body });
    } catch (err) {
      status.textContent = "…";
      return;
    }
    const data = await reply.json();
    if (reply.status === 201) {
      form.reset();
      status.textContent = data.brand + " ****" + data.last4 + " ✓";
      window.parent.postMessage({ type: "waitroom-card-token", token: data.token, brand: data.brand, last4: data.last4 }, origin);
    } else {
      window.parent.postMessage({ type: "waitroom-card-error", error: data.error, field: data.field || "" }, origin);
    }
  });
})();
