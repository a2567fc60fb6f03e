// spacehost's web UI: a small layer over plain HTML forms (no build step).
// - <form data-api=URL data-method=POST [data-then=reload|goto:URL|show] [data-body=commit|volume]>: sends
//   the fields as JSON (same-origin, with the session cookie, as hub.csrf wants), shows errors in the form.
//   A field with data-json sends its value parsed (true, a list); data-body=volume adds the _source,
//   _mountPath and _readOnly fields to the list in the `volumes` field.
// - [data-live=OWNER/NAME]: the Space's stage and phases, live over SSE.
// - pre[data-log=URL]: a log streamed over SSE.
// - [data-dropzone]: drag and drop (or pick) files and commit them; files the hub's preupload sends to Git LFS
//   go through its LFS batch API first, as huggingface_hub sends them.
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

  // The commit API's NDJSON body: a header, then one line per file (base64 content, or an LFS object's oid).
  function ndjson(summary, files, deleted) {
    const lines = [{ key: "header", value: { summary: summary } }];
    for (const f of files) {
      if (f.oid) lines.push({ key: "lfsFile", value: { path: f.path, algo: "sha256", oid: f.oid, size: f.size } });
      else lines.push({ key: "file", value: { path: f.path, content: b64(f.bytes), encoding: "base64" } });
    }
    for (const p of deleted || []) lines.push({ key: "deletedFile", value: { path: p } });
    return lines.map(l => JSON.stringify(l)).join("\n") + "\n";
  }

  async function send(url, method, body, type) {
    const r = await fetch(url, { method: method, headers: { "Content-Type": type || "application/json" }, body: body,
      credentials: "same-origin" });
    let j = {}; try { j = await r.json(); } catch (e) { /* not JSON */ }
    if (!r.ok) throw new Error(j.error || j.detail || j.message || (r.status + " " + r.statusText));
    return j;
  }

  // SHA-256 in plain JS, for pages that are not a secure context (plain http off localhost: no crypto.subtle).
  const H0 = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
  const K = (() => {  // the fractional parts of the cube roots of the first 64 primes
    const k = new Uint32Array(64);
    for (let n = 2, i = 0; i < 64; n++) {
      let prime = true; for (let d = 2; d * d <= n; d++) if (n % d === 0) { prime = false; break; }
      if (prime) k[i++] = (Math.cbrt(n) % 1) * 0x100000000;
    }
    return k;
  })();
  function sha256(bytes) {
    const n = bytes.length, total = Math.ceil((n + 9) / 64) * 64;
    const m = new Uint8Array(total); m.set(bytes); m[n] = 0x80;
    const dv = new DataView(m.buffer);
    dv.setUint32(total - 8, Math.floor(n / 0x20000000)); dv.setUint32(total - 4, (n * 8) >>> 0);
    const h = new Uint32Array(H0), w = new Uint32Array(64), s = new Uint32Array(8);
    const rot = (x, r) => (x >>> r) | (x << (32 - r));
    for (let off = 0; off < total; off += 64) {
      for (let i = 0; i < 16; i++) w[i] = dv.getUint32(off + i * 4);
      for (let i = 16; i < 64; i++)
        w[i] = w[i - 16] + (rot(w[i - 15], 7) ^ rot(w[i - 15], 18) ^ (w[i - 15] >>> 3)) + w[i - 7] +
          (rot(w[i - 2], 17) ^ rot(w[i - 2], 19) ^ (w[i - 2] >>> 10));
      s.set(h);
      for (let i = 0; i < 64; i++) {
        const [a, b, c, d, e, f, g, hh] = s;
        const t1 = hh + (rot(e, 6) ^ rot(e, 11) ^ rot(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        const t2 = (rot(a, 2) ^ rot(a, 13) ^ rot(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        s.copyWithin(1, 0, 7); s[0] = t1 + t2; s[4] = d + t1;  // Uint32Array stores wrap mod 2^32
      }
      for (let i = 0; i < 8; i++) h[i] += s[i];
    }
    const out = new Uint8Array(32), od = new DataView(out.buffer);
    for (let i = 0; i < 8; i++) od.setUint32(i * 4, h[i]);
    return out;
  }
  async function sha256hex(bytes, pure) {
    const d = !pure && window.crypto && crypto.subtle ? new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))
      : sha256(bytes);
    return Array.from(d, b => b.toString(16).padStart(2, "0")).join("");
  }
  window.spacehost = { sha256hex: sha256hex };  // for the browser tests

  // Upload `files` ({path, file}) in one commit as huggingface_hub does: preupload says which go to Git LFS (the
  // hub's threshold); those are hashed, announced to the LFS batch API and PUT to the signed URLs it answers
  // (none for an object the Space already holds); the commit names them by oid, the others inline.
  async function upload(form, files, summary) {
    const asked = [];
    for (const f of files)
      asked.push({ path: f.path, size: f.file.size, sample: b64(new Uint8Array(await f.file.slice(0, 512).arrayBuffer())) });
    const pre = await send(form.dataset.preupload, "POST", JSON.stringify({ files: asked }));
    const lfs = new Set(pre.files.filter(x => x.uploadMode === "lfs").map(x => x.path));
    const out = [];
    for (const f of files) {
      const bytes = new Uint8Array(await f.file.arrayBuffer());
      out.push(lfs.has(f.path) ? { path: f.path, oid: await sha256hex(bytes), size: bytes.length, file: f.file }
        : { path: f.path, bytes: bytes });
    }
    const big = out.filter(f => f.oid);
    if (big.length) {
      const batch = await send(form.dataset.lfs, "POST", JSON.stringify({ operation: "upload", transfers: ["basic"],
        hash_algo: "sha256", objects: big.map(f => ({ oid: f.oid, size: f.size })) }), "application/vnd.git-lfs+json");
      for (const o of batch.objects) {
        if (o.error) throw new Error(o.error.message);
        const put = o.actions && o.actions.upload;
        if (!put) continue;  // the Space holds it already
        const f = big.find(b => b.oid === o.oid);
        say(form, "Uploading " + f.path + " (Git LFS, " + f.size + " bytes)…", true);
        const r = await fetch(put.href, { method: "PUT", body: f.file, credentials: "same-origin",
          headers: Object.assign({ "Content-Type": "application/octet-stream" }, put.header || {}) });
        if (!r.ok) throw new Error("Git LFS upload of " + f.path + ": " + r.status + " " + r.statusText);
      }
    }
    await send(form.dataset.upload, "POST", ndjson(summary, out), "application/x-ndjson");
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
      const start = $("#get-started");
      if (start) start.hidden = j.stage !== "NO_APP_FILE";
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
      const files = picked.map(f => ({ path: (dir ? dir + "/" : "") + f.name, file: f }));
      const summary = form.elements.summary.value || ("Upload " + files.map(f => f.path).join(", "));
      const button = $("button[type=submit]", form);
      button.disabled = true;
      try {
        await upload(form, files, summary);
        location.href = form.dataset.after;
      } catch (e) { say(form, e.message, false); } finally { button.disabled = false; }
    });
  }
})();
