// multicloud dashboard: live refresh of server-rendered fragments, the log tail over SSE,
// copy buttons and the destroy confirmation. No inline script anywhere (strict CSP); the
// pages work without this file, it only keeps them current.
"use strict";

// Elements with data-refresh are re-fetched (same origin, session cookie) and replaced. A
// section with data-active="false" has settled and stops refreshing.
function refresh(el) {
  const url = el.dataset.refresh;
  const every = Number(el.dataset.interval || 2000);
  let busy = false;
  const tick = async () => {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const r = await fetch(url, { headers: { Accept: "text/html" }, cache: "no-store", redirect: "manual" });
      if (r.type === "opaqueredirect" || r.status === 401) {
        // The session ended: the page itself goes to the login (and comes back after it).
        clearInterval(timer);
        location.reload();
        return;
      }
      if (r.ok) {
        const html = await r.text();
        if (el.tagName === "TBODY") {
          el.innerHTML = html;
        } else {
          const tmp = document.createElement("div");
          tmp.innerHTML = html;
          const fresh = tmp.firstElementChild;
          if (fresh) {
            // Keep focus where it was when the fragment is unchanged.
            if (fresh.outerHTML !== el.outerHTML) {
              el.replaceWith(fresh);
              el = fresh;
            }
            if (fresh.dataset.active === "false") { clearInterval(timer); }
          }
        }
      }
    } catch (_) { /* offline for a moment: try again next tick */ }
    busy = false;
  };
  if (el.dataset.active === "false") return;
  const timer = setInterval(tick, every);
}

// The log of the newest run: Server-Sent Events appended in batches (thousands of lines stay
// smooth), following the tail unless the reader scrolled up.
function stream(pre) {
  const status = document.getElementById("log-status");
  const es = new EventSource(pre.dataset.stream);
  let pending = [];
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    const follow = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 40;
    const frag = document.createDocumentFragment();
    for (const l of pending) {
      const span = document.createElement("span");
      span.className = l.stream || "stdout";
      span.textContent = l.line + "\n";
      frag.appendChild(span);
    }
    pending = [];
    pre.appendChild(frag);
    // Bound the DOM: keep the last 20,000 lines.
    while (pre.childNodes.length > 20000) pre.removeChild(pre.firstChild);
    if (follow) pre.scrollTop = pre.scrollHeight;
  };
  es.addEventListener("log", (e) => {
    try { pending.push(JSON.parse(e.data)); } catch (_) { return; }
    if (!scheduled) { scheduled = true; requestAnimationFrame(flush); }
  });
  es.addEventListener("end", (e) => {
    es.close();
    flush();
    try {
      const end = JSON.parse(e.data);
      if (status) status.textContent = "Run ended: " + end.status + (end.error_message ? " — " + end.error_message : "");
    } catch (_) { /* ignore */ }
  });
  es.addEventListener("error", () => {
    if (es.readyState === EventSource.CLOSED && status) status.textContent = "Log stream closed.";
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-refresh]").forEach(refresh);
  document.querySelectorAll("pre[data-stream]").forEach(stream);
  document.addEventListener("click", (e) => {
    const b = e.target.closest("button[data-copy]");
    if (!b) return;
    const src = document.getElementById(b.dataset.copy);
    if (src && navigator.clipboard) {
      navigator.clipboard.writeText(src.textContent).then(() => {
        const was = b.textContent; b.textContent = "Copied"; setTimeout(() => { b.textContent = was; }, 1500);
      });
    }
  });
  // The destroy button waits for the deployment's id to be typed (the server checks it too).
  document.querySelectorAll("input[data-must-equal]").forEach((input) => {
    const button = input.form && input.form.querySelector("button[type=submit]");
    if (!button) return;
    const check = () => { button.disabled = input.value.trim() !== input.dataset.mustEqual; };
    input.addEventListener("input", check);
    check();
  });
});
