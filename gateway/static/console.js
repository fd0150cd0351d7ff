"use strict";
/* The staff console's live line: the event's figures are read again every few seconds
   and put in place (the page itself is never reloaded: a form being filled stays as it
   is). The checkbox stops it (WCAG 2.2.2). */
(() => {
  const table = document.getElementById("line");
  const live = document.getElementById("live");
  if (!table || !live) return;
  const every = Number(table.dataset.refresh || "5") * 1000;
  setInterval(async () => {
    if (!live.checked) return;
    try {
      const resp = await fetch(location.pathname, { headers: { Accept: "text/html" } });
      if (!resp.ok) return;
      const page = new DOMParser().parseFromString(await resp.text(), "text/html");
      const fresh = page.getElementById("line");
      if (fresh) table.replaceChildren(...fresh.children);
    } catch (e) {
      /* the next round tries again */
    }
  }, every);
})();
