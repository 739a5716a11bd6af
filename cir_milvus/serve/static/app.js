// cir_milvus web page: plain JavaScript against the same server's API (no build step, nothing from the network).
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const state = { info: null, file: null, refId: null, file2: null, like: [], unlike: [], seen: {}, seq: 0,
    searched: false, timer: null };
  const ALPHA_DEBOUNCE_MS = 250;

  const token = () => $("token").value.trim() || sessionStorage.getItem("cir-token") || "";
  const authHeaders = () => (token() ? { Authorization: "Bearer " + token() } : {});

  async function api(path, options = {}) {
    const res = await fetch(path, { ...options, headers: { ...(options.headers || {}), ...authHeaders() } });
    if (!res.ok) {
      let msg = res.status + " " + res.statusText;
      try { const body = await res.json(); if (body.error) msg = body.error.message; } catch (e) { /* not JSON */ }
      const err = new Error(msg); err.status = res.status; throw err;
    }
    return res;
  }

  function showError(msg) { const e = $("error"); e.textContent = msg || ""; e.hidden = !msg; }

  function collection() { return state.info.collections.find((c) => c.name === $("collection").value); }

  function fillCollection() {
    const c = collection();
    const rt = c.runtime || {};
    $("count").textContent = c.count + " images · " + c.model + " (" + (rt.backend || c.backend) +
      (rt.provider ? " · " + rt.provider : rt.device ? " · " + rt.device : "") + ")";
    const sel = $("composer"); sel.innerHTML = "";
    for (const name of Object.keys(c.composers)) {
      const o = document.createElement("option"); o.value = o.textContent = name;
      if (name === c.default_composer) o.selected = true;
      sel.appendChild(o);
    }
    for (const [name, why] of Object.entries(c.unavailable_composers || {})) {
      const o = document.createElement("option"); o.value = name; o.textContent = name + " (unavailable)";
      o.disabled = true; o.title = why; sel.appendChild(o);
    }
    const box = $("filter-fields"); box.innerHTML = "";
    const group = $("group-by"); group.innerHTML = '<option value="">—</option>';
    for (const f of c.filters.fields) {
      const lab = document.createElement("label"); lab.textContent = f + " ";
      const inp = document.createElement("input"); inp.dataset.field = f; inp.placeholder = "any";
      inp.setAttribute("list", "values-" + f);
      const dl = document.createElement("datalist"); dl.id = "values-" + f;
      lab.appendChild(inp); box.appendChild(lab); box.appendChild(dl);
    }
    for (const f of c.group_by || []) {
      const o = document.createElement("option"); o.value = o.textContent = f; group.appendChild(o);
    }
    $("filters").hidden = c.filters.fields.length === 0; // no empty boxes
    $("group-box").hidden = (c.group_by || []).length === 0;
    const targets = $("targets"); targets.length = 1; // mixed galleries: images, item texts, or both (hybrid)
    const offered = c.targets || ["image"];
    const choices = [["text", "item texts"], ["image,text", "images + texts"], ["image,text,bm25", "images + texts + words"]];
    for (const [value, label] of choices) {
      if (value.split(",").every((t) => offered.includes(t))) {
        const o = document.createElement("option"); o.value = value; o.textContent = label; targets.appendChild(o);
      }
    }
    $("targets-box").hidden = targets.length === 1;
    fillComposer();
  }

  function fillComposer() {
    const comp = collection().composers[$("composer").value];
    const box = $("alpha-box");
    $("alpha").disabled = !comp.alpha;
    box.classList.toggle("disabled", !comp.alpha);
    if (comp.alpha && comp.default_alpha !== null && !state.alphaTouched) $("alpha").value = comp.default_alpha;
    $("alpha-out").textContent = comp.alpha ? Number($("alpha").value).toFixed(2) : "n/a";
  }

  function setReferenceFile(file) {
    if (!file || !file.type.startsWith("image/")) { showError("that is not an image file"); return; }
    state.file = file; state.refId = null;
    const img = $("ref-preview"); img.src = URL.createObjectURL(file); img.hidden = false;
    $("drop-hint").hidden = true; $("ref-label").textContent = "reference: " + file.name;
    showError("");
  }

  async function imageSrc(url) {
    if (!token()) return url; // <img> cannot send a Bearer header: fetch the bytes when a token is needed
    const res = await api(url);
    return URL.createObjectURL(await res.blob());
  }

  async function setReferenceHit(hit) {
    state.file = null; state.refId = hit.id;
    const img = $("ref-preview");
    if (hit.thumbnail_url) { img.src = await imageSrc(hit.thumbnail_url); img.hidden = false; $("drop-hint").hidden = true; }
    $("ref-label").textContent = "reference: " + (hit.source_name || "stored image") + " (id " + hit.id + ")";
  }

  function rememberValues(hits) {
    for (const f of collection().filters.fields) {
      const seen = (state.seen[f] = state.seen[f] || new Set());
      for (const h of hits) if (h.metadata[f] !== undefined) seen.add(String(h.metadata[f]));
      const dl = document.getElementById("values-" + f);
      if (dl) dl.innerHTML = [...seen].sort().map((v) => '<option value="' + v.replace(/"/g, "&quot;") + '">').join("");
    }
  }

  function query() {
    const c = collection(), comp = c.composers[$("composer").value];
    const q = { collection: c.name, text: $("text").value, composer: $("composer").value, k: Number($("k").value) || 12 };
    if (comp.alpha) q.alpha = Number($("alpha").value);
    const negative = $("negative").value.trim();
    if (negative) q.negative = negative;
    if (state.like.length) q.like = [...state.like];
    if (state.unlike.length) q.unlike = [...state.unlike];
    const where = {};
    for (const inp of document.querySelectorAll("#filter-fields input")) {
      const v = inp.value.trim();
      if (v) where[inp.dataset.field] = /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v;
    }
    if (Object.keys(where).length) q.where = where;
    if ($("group-by").value) q.group_by = $("group-by").value;
    if ($("targets").value) q.targets = $("targets").value.split(",");
    if (state.refId && comp.needs_image) q.ref_id = state.refId;
    return q;
  }

  function base64Of(file) {
    return new Promise((resolve, reject) => {
      const r = new FileReader();
      r.onload = () => resolve(String(r.result).split(",")[1]);
      r.onerror = () => reject(new Error("cannot read " + file.name));
      r.readAsDataURL(file);
    });
  }

  async function send(q, comp) {
    const json = (body) => api("search", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    if (state.file2 && comp.needs_image) { // two references: the library's images / ref_ids (images first)
      const body = { ...q }; delete body.ref_id;
      body.images_b64 = [];
      if (state.file) body.images_b64.push(await base64Of(state.file));
      body.images_b64.push(await base64Of(state.file2));
      if (state.refId) body.ref_ids = [state.refId];
      return json(body);
    }
    if (state.file && comp.needs_image) {
      const form = new FormData();
      for (const [key, v] of Object.entries(q)) form.append(key, typeof v === "object" ? JSON.stringify(v) : String(v));
      form.append("image", state.file);
      return api("search", { method: "POST", body: form });
    }
    return json(q);
  }

  function showFeedback() {
    const n = state.like.length, m = state.unlike.length;
    $("feedback").hidden = n + m === 0;
    $("feedback-text").textContent = (n ? n + " more like" : "") + (n && m ? " · " : "") + (m ? m + " less like" : "");
  }

  function judge(id, list, other) { // "more / less like this" on a tile, then search again
    state[other] = state[other].filter((x) => x !== id);
    state[list] = state[list].includes(id) ? state[list].filter((x) => x !== id) : [...state[list], id];
    showFeedback(); search();
  }

  function ready(quiet) {
    const comp = collection().composers[$("composer").value];
    if (comp.needs_image && !state.file && !state.refId) { if (!quiet) showError("choose a reference image first (or click a result)"); return false; }
    if (comp.needs_text && !$("text").value.trim()) { if (!quiet) { showError("type a modification text"); $("text").focus(); } return false; }
    return true;
  }

  async function search() {
    clearTimeout(state.timer);
    if (!ready(false)) return;
    const seq = ++state.seq; // a newer search makes this one's answer stale: it is dropped
    showError(""); $("status").textContent = "searching…";
    $("results").classList.add("stale"); $("results").setAttribute("aria-busy", "true");
    const comp = collection().composers[$("composer").value];
    const q = query();
    try {
      const res = await send(q, comp);
      const result = await res.json();
      if (seq === state.seq) { render(result, q); state.searched = true; }
    } catch (e) {
      if (seq === state.seq) { showError(e.message); $("status").textContent = ""; }
    } finally {
      if (seq === state.seq) { $("results").classList.remove("stale"); $("results").removeAttribute("aria-busy"); }
    }
  }

  function searchSoon() { // the alpha slider: search again once it rests
    clearTimeout(state.timer);
    if (state.searched && ready(true)) {
      $("results").classList.add("stale");
      state.timer = setTimeout(search, ALPHA_DEBOUNCE_MS);
    }
  }

  function render(result, q) {
    const box = $("results"); box.innerHTML = "";
    $("status").textContent = result.hits.length + " hits · " + result.composer +
      (q.alpha !== undefined ? " · alpha " + q.alpha.toFixed(2) : "") + " · " + result.took_ms + " ms";
    rememberValues(result.hits);
    for (const hit of result.hits) {
      const name = hit.source_name || hit.id;
      const tile = document.createElement("div"); tile.className = "tile"; tile.dataset.id = hit.id;
      tile.tabIndex = 0; tile.setAttribute("role", "button");
      tile.title = name + "\nid " + hit.id + "\nclick or press Enter to search from this image";
      tile.setAttribute("aria-label", "search from " + name + " (score " + hit.score.toFixed(3) + ")");
      const frame = document.createElement("div"); frame.className = "img";
      if (hit.thumbnail_url) {
        const img = document.createElement("img"); img.alt = name; img.loading = "lazy";
        imageSrc(hit.thumbnail_url).then((src) => { img.src = src; }).catch(() => { img.alt = "(no image)"; });
        frame.appendChild(img);
      } else { frame.textContent = "no image"; }
      const cap = document.createElement("div"); cap.className = "cap";
      const score = document.createElement("span"); score.className = "score"; score.textContent = hit.score.toFixed(3);
      const label = document.createElement("span"); label.className = "name"; label.textContent = name;
      label.title = "id " + hit.id;
      cap.append(score, label);
      const meta = document.createElement("div"); meta.className = "meta";
      meta.textContent = Object.entries(hit.metadata).map(([k, v]) => k + ": " + JSON.stringify(v)).join("\n") || "(no metadata)";
      const fb = document.createElement("div"); fb.className = "fb";
      for (const [list, other, text, tip] of [["like", "unlike", "more like", "more like this: move the results towards it"],
                                              ["unlike", "like", "less like", "less like this: move the results away from it"]]) {
        const b = document.createElement("button"); b.type = "button"; b.textContent = text; b.title = tip;
        b.setAttribute("aria-label", text + " this (" + name + ")");
        b.className = list; b.setAttribute("aria-pressed", String(state[list].includes(hit.id)));
        b.addEventListener("click", (e) => { e.stopPropagation(); judge(hit.id, list, other); });
        b.addEventListener("keydown", (e) => e.stopPropagation());
        fb.appendChild(b);
      }
      tile.append(frame, meta, cap, fb);
      const pick = () => { setReferenceHit(hit).then(search); };
      tile.addEventListener("click", pick);
      tile.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pick(); } });
      box.appendChild(tile);
    }
  }

  async function load() {
    try {
      state.info = await (await api("info")).json();
    } catch (e) {
      if (e.status === 401) { $("token-box").hidden = false; showError("this server needs an API token"); return; }
      showError(e.message); return;
    }
    $("token-box").hidden = !state.info.auth;
    const sel = $("collection"); sel.innerHTML = "";
    for (const c of state.info.collections) { const o = document.createElement("option"); o.value = o.textContent = c.name; sel.appendChild(o); }
    $("k").max = state.info.limits.max_k;
    fillCollection();
    document.body.dataset.ready = "1";
  }

  const drop = $("drop");
  drop.addEventListener("click", () => $("file").click());
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("file").click(); });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); if (e.dataTransfer.files.length) setReferenceFile(e.dataTransfer.files[0]); });
  document.addEventListener("paste", (e) => { const f = [...(e.clipboardData || {}).files || []][0]; if (f) setReferenceFile(f); });
  $("file").addEventListener("change", (e) => { if (e.target.files.length) setReferenceFile(e.target.files[0]); });
  $("form").addEventListener("submit", (e) => { e.preventDefault(); search(); });
  $("second-pick").addEventListener("click", () => $("file2").click());
  $("file2").addEventListener("change", (e) => {
    const f = e.target.files[0];
    if (!f || !f.type.startsWith("image/")) return;
    state.file2 = f; $("second-label").textContent = "second: " + f.name; $("second-clear").hidden = false;
  });
  $("second-clear").addEventListener("click", () => {
    state.file2 = null; $("file2").value = ""; $("second-label").textContent = ""; $("second-clear").hidden = true;
  });
  $("feedback-clear").addEventListener("click", () => { state.like = []; state.unlike = []; showFeedback(); if (state.searched) search(); });
  $("collection").addEventListener("change", () => { state.refId = null; state.like = []; state.unlike = []; showFeedback(); fillCollection(); });
  $("composer").addEventListener("change", fillComposer);
  $("alpha").addEventListener("input", () => { state.alphaTouched = true; fillComposer(); searchSoon(); });
  $("token").addEventListener("change", () => { sessionStorage.setItem("cir-token", $("token").value.trim()); load(); });
  load();
})();
