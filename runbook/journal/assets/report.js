// runbook report: draws the per-host timeline from the JSON in #report-data.
// Every string comes from the journal and is untrusted: it only ever reaches the page
// through textContent or attribute setters, never as markup.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const tl = document.getElementById("tl");
  const tip = document.getElementById("tip");
  const span = data.span;
  const FAILED = new Set(["failed", "timed_out", "unreachable", "unknown"]);
  // cmd rows: [host, step, status, start ms, end ms, rc, attempts, error, duration ms, extra?]
  const H = 0, S = 1, ST = 2, T0 = 3, T1 = 4, RC = 5, ATT = 6, ERR = 7, DUR = 8, X = 9;

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function pct(ms) {
    return (100 * ms / span) + "%";
  }

  function fmtDur(ms) {
    if (ms < 1) return "<1 ms";
    if (ms < 1000) return Math.round(ms) + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(2) + " s";
    const s = Math.floor(ms / 1000), m = Math.floor(s / 60);
    if (m < 60) return m + "m " + String(s % 60).padStart(2, "0") + "s";
    return Math.floor(m / 60) + "h " + String(m % 60).padStart(2, "0") + "m";
  }

  function fmtTick(ms) {
    if (ms === 0) return "0";
    if (ms < 1000) return Math.round(ms) + " ms";
    if (ms < 60000) return Number((ms / 1000).toFixed(2)) + " s";
    return fmtDur(ms);
  }

  function statusName(c) {
    return data.statuses[c[ST]];
  }

  function buildHead(inner, zoom) {
    const old = inner.querySelector(".tl-head");
    const head = el("div", "tl-row tl-head");
    head.appendChild(el("div", "tl-label", "host / step"));
    const track = el("div", "tl-track");
    // stepSpans: [step, start ms, end ms], once per time the step ran
    data.stepSpans.forEach(function (sp) {
      const label = el("div", "tl-step", data.steps[sp[0]]);
      label.style.left = pct(sp[1]);
      label.style.maxWidth = "calc(" + pct(Math.max(sp[2] - sp[1], 0)) + " - 2px)";
      label.title = data.steps[sp[0]];
      track.appendChild(label);
    });
    const raw = span / (8 * zoom), pow = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map(function (k) { return k * pow; })
      .find(function (s) { return s >= raw; });
    for (let t = 0; t <= span; t += step) {
      const tick = el("div", "tl-tick", fmtTick(t));
      tick.style.left = pct(t);
      track.appendChild(tick);
    }
    head.appendChild(track);
    if (old) inner.replaceChild(head, old); else inner.appendChild(head);
  }

  function buildBands(inner) {
    const bands = el("div", "tl-bands");
    data.stepSpans.forEach(function (sp) {
      const band = el("div", "tl-band");
      band.style.left = pct(sp[1]);
      band.style.width = pct(Math.max(sp[2] - sp[1], 0));
      bands.appendChild(band);
    });
    inner.appendChild(bands);
  }

  function buildRows(inner) {
    const tracks = [], bad = new Set(), notOk = new Set();
    data.cmds.forEach(function (c) {
      if (statusName(c) !== "ok") notOk.add(c[H]);
      if (FAILED.has(statusName(c))) bad.add(c[H]);
    });
    const rows = document.createDocumentFragment();
    data.hosts.forEach(function (host, h) {
      const row = el("div", "tl-row" + (notOk.has(h) ? "" : " clean"));
      const label = el("div", "tl-label" + (bad.has(h) ? " bad" : ""), host);
      label.title = host;
      row.appendChild(label);
      tracks.push(row.appendChild(el("div", "tl-track")));
      rows.appendChild(row);
    });
    data.cmds.forEach(function (c, i) {
      const status = statusName(c);
      const bar = el("div", "bar s-" + status + (c[X] && c[X].f !== undefined ? " linked" : ""));
      bar.style.left = pct(c[T0]);
      bar.style.width = pct(c[T1] - c[T0]);
      bar.dataset.i = i;
      bar.setAttribute("role", "img");
      bar.setAttribute("aria-label", data.hosts[c[H]] + " · " + data.steps[c[S]] + " · " + status);
      tracks[c[H]].appendChild(bar);
    });
    inner.appendChild(rows);
  }

  function details(c) {
    const x = c[X] || {}, status = statusName(c);
    const lines = [
      ["host", data.hosts[c[H]]],
      ["step", data.steps[c[S]]],
      ["status", status === "unknown" ? "unknown outcome (started, no result)" : status],
    ];
    if (x.group !== undefined) lines.push(["group", String(x.group)]);
    if (x.batch !== undefined) lines.push(["batch", String(x.batch)]);
    if (c[RC] !== null) lines.push(["rc", String(c[RC])]);
    if (c[ATT] !== null) lines.push(["attempts", String(c[ATT])]);
    if (x.changed !== undefined) lines.push(["changed", String(x.changed)]);
    lines.push(["started", "+" + fmtDur(c[T0])]);
    lines.push(["duration", status === "unknown" ? "unknown" : fmtDur(c[DUR])]);
    if (c[ERR] >= 0) lines.push(["error", data.strings[c[ERR]]]);
    if (x.f !== undefined) lines.push(["", "click for the output"]);
    return lines;
  }

  function showTip(ev, bar) {
    const c = data.cmds[Number(bar.dataset.i)];
    tip.textContent = "";
    details(c).forEach(function (kv) {
      const line = el("div");
      if (kv[0]) line.appendChild(el("b", "", kv[0] + ": "));
      line.appendChild(document.createTextNode(kv[1]));
      tip.appendChild(line);
    });
    tip.hidden = false;
    moveTip(ev);
  }

  function moveTip(ev) {
    const w = tip.offsetWidth, h = tip.offsetHeight;
    let x = ev.clientX + 14, y = ev.clientY + 14;
    if (x + w > window.innerWidth - 4) x = Math.max(4, ev.clientX - w - 14);
    if (y + h > window.innerHeight - 4) y = Math.max(4, ev.clientY - h - 14);
    tip.style.left = x + "px";
    tip.style.top = y + "px";
  }

  function wire(inner) {
    tl.addEventListener("mouseover", function (ev) {
      const bar = ev.target.closest(".bar");
      if (bar) showTip(ev, bar); else tip.hidden = true;
    });
    tl.addEventListener("mousemove", function (ev) { if (!tip.hidden) moveTip(ev); });
    tl.addEventListener("mouseleave", function () { tip.hidden = true; });
    tl.addEventListener("click", function (ev) {
      const bar = ev.target.closest(".bar.linked");
      if (!bar) return;
      const target = document.getElementById("f" + data.cmds[Number(bar.dataset.i)][X].f);
      if (target) { target.open = true; target.scrollIntoView(); location.hash = target.id; }
    });
    document.getElementById("only-problems").addEventListener("change", function (ev) {
      tl.classList.toggle("problems-only", ev.target.checked);
    });
    document.querySelectorAll("[data-zoom]").forEach(function (button) {
      button.addEventListener("click", function () {
        const zoom = Number(button.dataset.zoom);
        inner.style.width = (100 * zoom) + "%";
        document.querySelectorAll("[data-zoom]").forEach(function (b) {
          b.classList.toggle("on", b === button);
        });
        buildHead(inner, zoom);
      });
    });
  }

  function legend() {
    const counts = data.statuses.map(function () { return 0; });
    data.cmds.forEach(function (c) { counts[c[ST]] += 1; });
    const box = document.getElementById("legend");
    data.statuses.forEach(function (s, i) {
      if (!counts[i]) return;
      box.appendChild(el("span", "pill s-" + s, (s === "unknown" ? "unknown outcome" : s) + " " + counts[i]));
    });
  }

  const inner = el("div", "tl-inner");
  if (data.hosts.length > 60) tl.classList.add("dense");
  buildHead(inner, 1);
  buildBands(inner);
  buildRows(inner);
  tl.appendChild(inner);
  legend();
  wire(inner);
  document.querySelector('[data-zoom="1"]').classList.add("on");
})();
