// spacehost's web UI: a small layer over plain HTML forms (no build step).
// - <form data-api=URL data-method=POST [data-then=reload|goto:URL|show] [data-body=commit|volume]>: sends
//   the fields as JSON (same-origin, with the session cookie, as hub.csrf wants), shows errors in the form.
//   A field with data-json sends its value parsed (true, a list); data-body=volume adds the _source,
//   _mountPath and _readOnly fields to the list in the `volumes` field.
// - [data-live=OWNER/NAME]: the Space's stage and phases, live over SSE.
// - pre[data-log=URL]: a log streamed over SSE.
// - [data-dropzone]: drag and drop (or pick) files and commit them.
"use strict";
(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  function say(form, text, ok) {
    let out = $(".result", form);
    if (!out) { out = document.createElement("p"); out.className = "result"; out.setAttribute("role", "status"); form.append(out); }
    out.textContent = text; out.classList.toggle("error", !ok);
  }

  function fields(form) {
    const body = {};
    for (const el of form.elements) {
      if (!el.name || el.disabled) continue;
      if (el.dataset.json !== undefined) body[el.name] = JSON.parse(el.value);
      else if (el.type === "checkbox") body[el.name] = el.checked;
      else if (el.type === "radio") { if (el.checked) body[el.name] = el.value; }
      else if (el.type === "number") { if (el.value !== "") body[el.name] = Number(el.value); }
      else if (el.value !== "" || el.dataset.keepEmpty !== undefined) body[el.name] = el.value;
    }
    return body;
  }

  function b64(bytes) {
    let s = ""; const chunk = 0x8000;
    for (let i = 0; i < bytes.length; i += chunk) s += String.fromCharCode.apply(null, bytes.subarray(i, i + chunk));
    return btoa(s);
  }

  // The commit API's NDJSON body: a header, then one line per file (base64 content).
  function ndjson(summary, files, deleted) {
    const lines = [{ key: "header", value: { summary: summary } }];
    for (const f of files) lines.push({ key: "file", value: { path: f.path, content: b64(f.bytes), encoding: "base64" } });
    for (const p of deleted || []) lines.push({ key: "deletedFile", value: { path: p } });
    return lines.map(l => JSON.stringify(l)).join("\n") + "\n";
  }

  async function send(url, method, body, type) {
    const r = await fetch(url, { method: method, headers: { "Content-Type": type || "application/json" }, body: body,
      credentials: "same-origin" });
    let j = {}; try { j = await r.json(); } catch (e) { /* not JSON */ }
    if (!r.ok) throw new Error(j.error || j.detail || (r.status + " " + r.statusText));
    return j;
  }

  function then(form, j) {
    const t = form.dataset.then || "reload";
    if (t === "reload") location.reload();
    else if (t.startsWith("goto:")) location.href = t.slice(5).replace("{name}", encodeURIComponent(j.name || ""));
    else if (t === "url" && j.url) location.href = new URL(j.url).pathname;
    else if (t === "show") {
      say(form, form.dataset.done || "Done.", true);
      const slot = form.dataset.show && $(form.dataset.show);
      if (slot) { slot.hidden = false; const v = $("[data-value]", slot); if (v) v.textContent = j[v.dataset.value] || ""; }
    }
  }

  document.addEventListener("submit", async ev => {
    const form = ev.target;
    if (!form.dataset.api) return;
    ev.preventDefault();
    const button = $("button[type=submit], button:not([type])", form);
    if (button) button.disabled = true;
    try {
      let url = form.dataset.api, body, type;
      const f = fields(form);
      if (form.dataset.body === "commit") {
        const text = new TextEncoder().encode(f.content || "");
        body = ndjson(f.summary || ("Update " + f.path), [{ path: f.path, bytes: text }]);
        type = "application/x-ndjson";
        if (f.create_pr) url += (url.includes("?") ? "&" : "?") + "create_pr=1";
      } else {
        if (form.dataset.body === "volume")
          f.volumes = f.volumes.concat([{ type: "bucket", source: f._source, mountPath: f._mountPath, readOnly: f._readOnly }]);
        for (const k of Object.keys(f)) if (k.startsWith("_")) delete f[k];
        body = (form.dataset.method || "POST") === "GET" ? undefined : JSON.stringify(f);
      }
      const j = await send(url, form.dataset.method || "POST", body, type);
      then(form, j);
    } catch (e) {
      say(form, e.message, false);
    } finally {
      if (button) button.disabled = false;
    }
  });

  // "Type the name to confirm": the button stays disabled until the text matches.
  for (const input of $$("input[data-confirm]")) {
    const button = $("button", input.form);
    const check = () => { button.disabled = input.value !== input.dataset.confirm; };
    input.addEventListener("input", check); check();
  }

  // New Space: the name is checked as it is typed (invalid, taken, colliding address).
  const nameInput = $("#space-name");
  if (nameInput) {
    const out = $("#name-check"); const owner = $("#space-owner"); let timer = 0;
    const check = () => {
      clearTimeout(timer);
      timer = setTimeout(async () => {
        if (!nameInput.value) { out.textContent = ""; return; }
        const q = new URLSearchParams({ owner: owner.value, name: nameInput.value });
        const j = await (await fetch("/new/check?" + q)).json();
        out.textContent = j.ok ? "✓ " + j.reason : "✗ " + j.reason;
        out.className = j.ok ? "ok" : "error";
        nameInput.setAttribute("aria-invalid", j.ok ? "false" : "true");
      }, 150);
    };
    nameInput.addEventListener("input", check); owner.addEventListener("change", check);
  }

  // Live stage and phases of a Space.
  const live = $("[data-live]");
  if (live && window.EventSource) {
    const es = new EventSource("/spaces/" + live.dataset.live + "/status-stream");
    es.onmessage = e => {
      const j = JSON.parse(e.data);
      for (const el of $$("[data-stage]")) { el.textContent = j.stage; el.className = "badge " + j.stage; }
      const ph = $("#phases");
      if (ph && j.phasesHtml !== undefined) ph.innerHTML = ph.hasAttribute("data-hide-serving") && j.serving ? "" : j.phasesHtml;
      const why = $("#why");
      if (why && j.whyHtml !== undefined) why.innerHTML = j.whyHtml;
      const frame = $("iframe.app");
      if (frame && j.serving && frame.dataset.serving === "0") frame.src = frame.src;  // it just came up: load it
      if (frame) frame.dataset.serving = j.serving ? "1" : "0";
      const app = $("#app-box");
      if (app) app.hidden = !j.serving;
    };
  }

  // Logs over SSE (HF's format: data: {"data": line, "timestamp": ...}).
  for (const pre of $$("pre[data-log]")) {
    const es = new EventSource(pre.dataset.log);
    es.onmessage = e => {
      if (!e.data) return;
      const d = JSON.parse(e.data);
      const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
      pre.textContent += d.data + "\n";
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    };
  }

  // Drag and drop upload: files dropped (or picked) are committed in one commit.
  for (const zone of $$("[data-dropzone]")) {
    const pick = $("input[type=file]", zone); const form = zone.closest("form");
    let picked = [];
    const show = () => { $(".picked", zone).textContent = picked.map(f => f.name).join(", ") || "No file chosen"; };
    zone.addEventListener("dragover", e => { e.preventDefault(); zone.classList.add("over"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", e => { e.preventDefault(); zone.classList.remove("over"); picked = Array.from(e.dataTransfer.files); show(); });
    pick.addEventListener("change", () => { picked = Array.from(pick.files); show(); });
    form.addEventListener("submit", async ev => {
      ev.preventDefault();
      if (!picked.length) { say(form, "Choose or drop files first.", false); return; }
      const dir = (form.elements.dir.value || "").replace(/^\/+|\/+$/g, "");
      const files = [];
      for (const f of picked) files.push({ path: (dir ? dir + "/" : "") + f.name, bytes: new Uint8Array(await f.arrayBuffer()) });
      const summary = form.elements.summary.value || ("Upload " + files.map(f => f.path).join(", "));
      try {
        await send(form.dataset.upload, "POST", ndjson(summary, files), "application/x-ndjson");
        location.href = form.dataset.after;
      } catch (e) { say(form, e.message, false); }
    });
  }
})();
