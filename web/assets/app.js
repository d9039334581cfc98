// The page's only script: follows running imports over server-sent events
// and uploads with a progress line. Everything else is plain HTML.
(() => {
  "use strict";
  const num = (v) => (typeof v === "number" ? v.toLocaleString("en-US") : v);
  const pct = (p) => `${Math.floor(p)} %`;

  function render(card, imp) {
    card.dataset.state = imp.state;
    for (const el of card.querySelectorAll("[data-field]")) {
      const v = el.dataset.field.split(".").reduce((o, k) => (o == null ? o : o[k]), imp);
      if (el.dataset.field === "error") {
        el.hidden = !v;
        el.textContent = v || "";
      } else if (v !== undefined) {
        el.textContent = num(v);
      }
    }
    const bar = card.querySelector("progress");
    if (bar) bar.value = imp.percent;
    const label = card.querySelector("[data-percent]");
    if (label) label.textContent = pct(imp.percent);
  }

  function follow(card) {
    const id = encodeURIComponent(card.dataset.import);
    // The browser reconnects by itself, with Last-Event-ID, if the stream
    // breaks; the done event ends it.
    const es = new EventSource(`/api/v1/imports/${id}/events`);
    const update = (ev) => render(card, JSON.parse(ev.data));
    es.addEventListener("progress", update);
    es.addEventListener("done", (ev) => {
      update(ev);
      es.close();
      card.removeAttribute("data-live");
    });
  }
  // A browser keeps few connections per site open: follow the newest few.
  [...document.querySelectorAll("[data-import][data-live]")].slice(0, 4).forEach(follow);

  const form = document.getElementById("upload");
  if (!form) return;
  const status = document.getElementById("upload-status");
  const button = form.querySelector("button[type=submit]");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.upload.addEventListener("progress", (ev) => {
      if (ev.lengthComputable) status.textContent = `Uploading… ${pct((ev.loaded * 100) / ev.total)}`;
    });
    xhr.addEventListener("load", () => {
      if (xhr.status === 202) {
        status.textContent = "Uploaded; importing…";
        location.reload();
        return;
      }
      let msg = `HTTP ${xhr.status}`;
      try { msg = JSON.parse(xhr.responseText).error || msg; } catch { /* not JSON */ }
      status.textContent = msg;
      status.className = "error";
      button.disabled = false;
    });
    xhr.addEventListener("error", () => {
      status.textContent = "The upload failed: the service did not answer.";
      status.className = "error";
      button.disabled = false;
    });
    status.className = "";
    status.textContent = "Uploading…";
    button.disabled = true;
    xhr.send(new FormData(form));
  });
})();
