// dormant's dashboard: signs in with a token (kept in sessionStorage, sent
// only in the Authorization header), lists containers, follows /v1/events
// for live updates and acts on containers through the REST API.
"use strict";

(() => {
  const TOKEN_KEY = "dormant.token";
  const BACKOFF_MIN_MS = 1000;
  const BACKOFF_MAX_MS = 30000;
  // Host totals are re-read after events, at most this often.
  const STATS_EVERY_MS = 2000;
  // Idle times are redrawn from the local clock (no network) this often.
  const IDLE_REDRAW_MS = 10000;
  // The parser keeps at most this much of an unfinished event.
  const MAX_EVENT_CHARS = 1 << 20;

  const $ = (id) => document.getElementById(id);
  const tbody = document.querySelector("#containers tbody");

  const containers = new Map(); // name -> container view
  const rows = new Map(); // name -> { tr, drawn } (drawn: the view it shows)
  const generation = new Map(); // name -> events seen, to drop stale re-fetches
  const refetching = new Map(); // name -> "busy" | "again"
  let sort = { key: "name", dir: 1 };
  let filter = "";
  let isAdmin = false;
  let session = null; // { token, abort, lastEventId }
  let drawScheduled = false;
  let statsTimer = null;
  let statsDue = 0;

  // ---------- API ----------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(method, path, body) {
    const headers = { Authorization: "Bearer " + session.token };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: session.abort.signal,
      cache: "no-store",
      credentials: "omit",
    });
    const text = await response.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch (_) {
      json = null;
    }
    if (!response.ok) {
      const error = json && json.error;
      throw new ApiError(
        response.status,
        error ? error.code : "http_" + response.status,
        error ? error.message : `${method} ${path}: HTTP ${response.status}`,
      );
    }
    return json;
  }

  // ---------- messages ----------

  function showError(error) {
    if (error && error.name === "AbortError") return;
    const text =
      error instanceof ApiError ? `${error.message} (${error.code})` : String(error.message || error);
    const box = $("error");
    box.textContent = text;
    box.hidden = false;
    if (error instanceof ApiError && error.status === 401) signOut("the token was refused: " + text);
  }

  function clearError() {
    $("error").hidden = true;
    $("error").textContent = "";
  }

  function setLive(text, state) {
    const live = $("live");
    live.textContent = text;
    live.dataset.state = state;
  }

  // ---------- sign in / out ----------

  async function signIn(token) {
    session = { token, abort: new AbortController(), lastEventId: null };
    clearError();
    try {
      await relist();
    } catch (error) {
      session.abort.abort();
      session = null;
      sessionStorage.removeItem(TOKEN_KEY);
      showError(error);
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    $("sign-in-panel").hidden = true;
    $("dashboard").hidden = false;
    $("sign-out").hidden = false;
    $("token").value = "";
    await readStats();
    follow(session);
  }

  function signOut(why) {
    sessionStorage.removeItem(TOKEN_KEY);
    if (session) session.abort.abort();
    session = null;
    containers.clear();
    rows.clear();
    generation.clear();
    refetching.clear();
    tbody.replaceChildren();
    $("dashboard").hidden = true;
    $("host").hidden = true;
    $("sign-out").hidden = true;
    $("sign-in-panel").hidden = false;
    setLive(why ? "signed out: " + why : "signed out", "off");
    $("token").focus();
  }

  // ---------- the list ----------

  async function relist() {
    const list = await api("GET", "/v1/containers");
    containers.clear();
    for (const c of list.containers) containers.set(c.name, c);
    for (const name of [...rows.keys()]) if (!containers.has(name)) rows.delete(name);
    scheduleDraw();
  }

  // A container changed: fetch it again for the fields an event lacks
  // (last wake, snapshot, activity). One fetch per container at a time;
  // events during one ask for another after it.
  async function refetch(name) {
    if (refetching.has(name)) {
      refetching.set(name, "again");
      return;
    }
    refetching.set(name, "busy");
    const mine = session;
    try {
      const seen = generation.get(name);
      const view = await api("GET", "/v1/containers/" + encodeURIComponent(name));
      if (mine === session && generation.get(name) === seen && containers.has(name)) {
        containers.set(name, view);
        scheduleDraw();
      }
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        containers.delete(name);
        scheduleDraw();
      } else if (error.name !== "AbortError") {
        console.warn("dormant: re-reading", name, error);
      }
    } finally {
      const again = refetching.get(name) === "again";
      refetching.delete(name);
      if (again && mine === session) refetch(name);
    }
  }

  function onEvent(kind, data) {
    if (kind === "reset") {
      relist().catch(showError);
      statsSoon();
      return;
    }
    let event;
    try {
      event = JSON.parse(data);
    } catch (_) {
      return;
    }
    const name = event.container;
    if (!name) return;
    generation.set(name, (generation.get(name) || 0) + 1);
    if (event.kind === "deleted") {
      containers.delete(name);
    } else {
      const known = containers.get(name);
      if (known) {
        containers.set(name, Object.assign({}, known, {
          state: event.state,
          reason: event.reason || undefined,
          last_wake_ms: event.wake_ms != null ? event.wake_ms : known.last_wake_ms,
        }));
      }
      // A new container (or one not yet listed) is read in full; a known
      // one is patched now and filled in by its re-read.
      if (!known) containers.set(name, { name, state: event.state, tenant: event.tenant, placeholder: true });
      refetch(name);
    }
    scheduleDraw();
    statsSoon();
  }

  // ---------- the event stream ----------

  // EventSource cannot send an Authorization header, and the token must not
  // go in a URL: read the stream with fetch and parse Server-Sent Events.
  async function follow(mine) {
    let backoff = BACKOFF_MIN_MS;
    while (mine === session) {
      try {
        setLive("connecting…", "connecting");
        const headers = { Authorization: "Bearer " + mine.token, Accept: "text/event-stream" };
        if (mine.lastEventId != null) headers["Last-Event-ID"] = mine.lastEventId;
        const response = await fetch("/v1/events", {
          headers,
          signal: mine.abort.signal,
          cache: "no-store",
          credentials: "omit",
        });
        if (response.status === 401) {
          signOut("the token was refused");
          return;
        }
        if (!response.ok || !response.body) throw new Error("event stream: HTTP " + response.status);
        // Events missed while no stream was open: a first connection (or
        // one that cannot resume) reads the list afresh.
        if (mine.lastEventId == null) await relist();
        setLive("live", "live");
        backoff = BACKOFF_MIN_MS;
        await readEvents(mine, response.body.getReader());
        if (mine !== session) return;
        setLive("stream ended; reconnecting…", "connecting");
      } catch (error) {
        if (mine !== session || error.name === "AbortError") return;
        if (error instanceof ApiError && error.status === 401) {
          signOut("the token was refused");
          return;
        }
        setLive("disconnected; retrying in " + Math.round(backoff / 1000) + " s", "off");
        console.warn("dormant: event stream", error);
      }
      await sleep(backoff);
      backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    }
  }

  async function readEvents(mine, reader) {
    const decoder = new TextDecoder();
    let buffer = "";
    let fields = { id: null, event: "message", data: [] };
    for (;;) {
      const { value, done } = await reader.read();
      if (done || mine !== session) return;
      buffer += decoder.decode(value, { stream: true });
      let newline;
      while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
        const line = buffer.slice(0, newline);
        const width = buffer.startsWith("\r\n", newline) ? 2 : 1;
        buffer = buffer.slice(newline + width);
        if (line === "") {
          if (fields.data.length > 0 || fields.event === "reset") {
            if (fields.id != null) mine.lastEventId = fields.id;
            onEvent(fields.event, fields.data.join("\n"));
          }
          fields = { id: null, event: "message", data: [] };
          continue;
        }
        if (line.startsWith(":")) continue; // heartbeat
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "id") fields.id = value;
        else if (field === "event") fields.event = value;
        else if (field === "data") fields.data.push(value);
      }
      if (buffer.length > MAX_EVENT_CHARS) throw new Error("event stream: an event is too long");
    }
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // ---------- host totals and the chart ----------

  async function readStats() {
    if (!session) return;
    try {
      const stats = await api("GET", "/v1/stats");
      isAdmin = true;
      drawStats(stats);
      $("host").hidden = false;
    } catch (error) {
      // A tenant may not read host-wide stats: the section stays hidden.
      isAdmin = false;
      $("host").hidden = true;
      if (!(error instanceof ApiError && error.status === 403)) showError(error);
    }
  }

  function statsSoon() {
    if (!isAdmin || statsTimer) return;
    const wait = Math.max(0, statsDue - Date.now());
    statsTimer = setTimeout(() => {
      statsTimer = null;
      statsDue = Date.now() + STATS_EVERY_MS;
      readStats();
    }, wait);
  }

  function drawStats(stats) {
    $("total-running").textContent =
      stats.max_running != null ? `${stats.running} of ${stats.max_running}` : `${stats.running} (no limit)`;
    $("total-memory").textContent =
      `${bytes(stats.memory_bytes)} of ${bytes(stats.memory_budget_bytes)}`;
    $("total-snapshots").textContent =
      `${bytes(stats.snapshot_bytes)} in ${stats.snapshot_files} file${stats.snapshot_files === 1 ? "" : "s"}`;
    $("total-rss").textContent = bytes(stats.dormant_rss_bytes);
    drawChart(stats.wakes_last_hour || []);
  }

  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attributes, text) {
    const element = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
    if (text != null) element.textContent = text;
    return element;
  }

  function drawChart(minutes) {
    const width = 900;
    const height = 150;
    const pad = { left: 34, right: 64, top: 10, bottom: 20 };
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const maxWakes = Math.max(1, ...minutes.map((m) => m.wakes));
    const maxMs = Math.max(1, ...minutes.map((m) => m.avg_ms));
    const total = minutes.reduce((sum, m) => sum + m.wakes, 0);
    const chart = svg("svg", {
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": `${total} wakes in the last hour; most in one minute ${maxWakes}; slowest minute's mean ${maxMs} ms`,
      class: "chart-svg",
    });
    const step = plotW / Math.max(1, minutes.length);
    minutes.forEach((m, i) => {
      if (m.wakes === 0) return;
      const h = (m.wakes / maxWakes) * plotH;
      const bar = svg("rect", {
        x: pad.left + i * step + 1,
        y: pad.top + plotH - h,
        width: Math.max(1, step - 2),
        height: h,
        class: "bar",
      });
      bar.appendChild(svg("title", {}, `${new Date(m.minute_start).toLocaleTimeString()}: ${m.wakes} wakes, mean ${m.avg_ms} ms, max ${m.max_ms} ms`));
      chart.appendChild(bar);
    });
    const points = minutes
      .map((m, i) => (m.wakes === 0 ? null : [pad.left + (i + 0.5) * step, pad.top + plotH - (m.avg_ms / maxMs) * plotH]))
      .filter(Boolean);
    if (points.length > 0) {
      chart.appendChild(svg("polyline", { points: points.map((p) => p.join(",")).join(" "), class: "line" }));
      for (const [x, y] of points) chart.appendChild(svg("circle", { cx: x, cy: y, r: 2.5, class: "dot" }));
    }
    chart.appendChild(svg("line", { x1: pad.left, y1: pad.top + plotH, x2: pad.left + plotW, y2: pad.top + plotH, class: "axis" }));
    chart.appendChild(svg("text", { x: pad.left - 4, y: pad.top + 8, class: "label bars", "text-anchor": "end" }, String(maxWakes)));
    chart.appendChild(svg("text", { x: pad.left - 4, y: pad.top + plotH, class: "label bars", "text-anchor": "end" }, "0"));
    chart.appendChild(svg("text", { x: pad.left + plotW + 4, y: pad.top + 8, class: "label ms" }, maxMs + " ms"));
    chart.appendChild(svg("text", { x: pad.left, y: height - 4, class: "label" }, "−60 min"));
    chart.appendChild(svg("text", { x: pad.left + plotW, y: height - 4, class: "label", "text-anchor": "end" }, "now"));
    $("chart").replaceChildren(chart);
  }

  // ---------- the table ----------

  const STATE_ORDER = ["running", "napping", "starting", "restoring", "creating", "stopping", "asleep", "archiving", "archived", "failed", "deleted"];

  function idleMs(c) {
    const at = Date.parse(c.last_active_at);
    return Number.isNaN(at) ? null : Math.max(0, Date.now() - at);
  }

  function memoryBytes(c) {
    const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$/i.exec(c.memory || "");
    if (!m) return null;
    return Number(m[1]) * 1024 ** " kmgt".indexOf((m[2] || " ").toLowerCase());
  }

  const SORT_KEYS = {
    name: (c) => c.name,
    state: (c) => STATE_ORDER.indexOf(c.state),
    idle: (c) => (c.state === "running" ? idleMs(c) : null), // shown only while running
    wake: (c) => c.last_wake_ms,
    memory: (c) => memoryBytes(c),
    snapshot: (c) => (c.snapshot ? c.snapshot.bytes : null),
  };

  function compare(a, b) {
    const key = SORT_KEYS[sort.key];
    const x = key(a);
    const y = key(b);
    if (x == null && y == null) return a.name < b.name ? -1 : 1;
    if (x == null) return 1; // unknowns last, either direction
    if (y == null) return -1;
    if (x < y) return -sort.dir;
    if (x > y) return sort.dir;
    return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
  }

  function matches(c) {
    if (!filter) return true;
    return [c.name, c.state, c.image, c.tenant, c.reason].some((f) => f && f.toLowerCase().includes(filter));
  }

  function scheduleDraw() {
    if (drawScheduled) return;
    drawScheduled = true;
    requestAnimationFrame(() => {
      drawScheduled = false;
      draw();
    });
  }

  function draw() {
    const shown = [...containers.values()].filter(matches).sort(compare);
    for (const name of [...rows.keys()]) if (!containers.has(name)) rows.delete(name);
    const trs = shown.map((c) => {
      let row = rows.get(c.name);
      if (!row) {
        row = { tr: makeRow(c.name), drawn: null };
        rows.set(c.name, row);
      }
      if (row.drawn !== c) {
        fillRow(row.tr, c);
        row.drawn = c;
      }
      return row.tr;
    });
    // Moving rows costs a layout of the whole table: only when the order
    // or the set of rows changed.
    const current = tbody.children;
    if (current.length !== trs.length || trs.some((tr, i) => current[i] !== tr)) tbody.replaceChildren(...trs);
    const total = containers.size;
    $("count").textContent = shown.length === total ? `(${total})` : `(${shown.length} of ${total})`;
    $("empty").hidden = shown.length > 0;
    document.querySelectorAll("#containers th[data-sort]").forEach((th) => {
      if (th.dataset.sort === sort.key) th.setAttribute("aria-sort", sort.dir > 0 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    });
  }

  function cell(tr, label) {
    const td = document.createElement("td");
    td.dataset.label = label;
    tr.appendChild(td);
    return td;
  }

  function makeRow(name) {
    const tr = document.createElement("tr");
    tr.dataset.name = name;
    cell(tr, "Name").className = "name";
    cell(tr, "State");
    cell(tr, "Idle").className = "idle num";
    cell(tr, "Last wake").className = "num";
    cell(tr, "Memory").className = "num";
    cell(tr, "Snapshot").className = "num";
    const actions = cell(tr, "Actions");
    actions.className = "actions";
    for (const [action, label] of [["wake", "Wake"], ["sleep", "Sleep"], ["archive", "Archive"], ["delete", "Delete"]]) {
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.action = action;
      button.textContent = label;
      button.setAttribute("aria-label", `${label} ${name}`);
      if (action === "delete") button.className = "danger";
      actions.appendChild(button);
    }
    return tr;
  }

  function fillRow(tr, c) {
    const [nameTd, stateTd, idleTd, wakeTd, memoryTd, snapshotTd, actionsTd] = tr.children;
    nameTd.replaceChildren();
    if (c.url) {
      const link = document.createElement("a");
      link.href = c.url;
      link.textContent = c.name;
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      nameTd.appendChild(link);
    } else {
      nameTd.textContent = c.name;
    }
    if (c.tenant && c.tenant !== "admin") {
      const tenant = document.createElement("span");
      tenant.className = "tenant";
      tenant.textContent = c.tenant;
      nameTd.appendChild(tenant);
    }
    const badge = document.createElement("span");
    badge.className = "badge state-" + c.state;
    badge.textContent = c.state;
    if (c.reason) badge.title = c.reason;
    stateTd.replaceChildren(badge);
    idleTd.textContent = c.state === "running" ? duration(idleMs(c)) : "–";
    wakeTd.textContent = c.last_wake_ms != null ? c.last_wake_ms + " ms" : "–";
    memoryTd.textContent = c.memory || "–";
    snapshotTd.textContent = c.snapshot ? bytes(c.snapshot.bytes) : "–";
    const busy = ["creating", "starting", "stopping", "archiving", "restoring"].includes(c.state);
    for (const button of actionsTd.children) {
      const action = button.dataset.action;
      button.disabled =
        (action === "wake" && (c.state === "running" || busy)) ||
        (action === "sleep" && c.state !== "running" && c.state !== "napping") ||
        (action === "archive" && (c.state === "archived" || busy));
    }
  }

  function duration(ms) {
    if (ms == null) return "–";
    const s = Math.floor(ms / 1000);
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    return Math.floor(s / 86400) + " d";
  }

  function bytes(n) {
    if (n == null) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i += 1;
    }
    return (i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)) + " " + units[i];
  }

  // ---------- actions ----------

  let pendingDelete = null;

  async function act(name, action, button) {
    clearError();
    if (action === "delete") {
      pendingDelete = name;
      $("confirm-name").textContent = name;
      $("confirm-delete").returnValue = "";
      $("confirm-delete").showModal();
      return;
    }
    button.disabled = true;
    try {
      // The row follows from the event stream, not from this answer.
      await api("POST", `/v1/containers/${encodeURIComponent(name)}/${action}`);
    } catch (error) {
      showError(error);
      button.disabled = false;
    }
  }

  async function confirmDelete() {
    const name = pendingDelete;
    pendingDelete = null;
    if ($("confirm-delete").returnValue !== "delete" || !name) return;
    try {
      await api("DELETE", "/v1/containers/" + encodeURIComponent(name));
    } catch (error) {
      showError(error);
    }
  }

  async function create(form) {
    clearError();
    const field = (id) => $(id).value.trim();
    const body = { image: field("create-image") };
    if (field("create-name")) body.name = field("create-name");
    if (field("create-memory")) body.memory = field("create-memory");
    const count = Number(field("create-count") || 1);
    if (count !== 1) body.count = count;
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      const created = await api("POST", "/v1/containers", body);
      for (const c of created.containers) {
        const known = containers.get(c.name);
        if (!known || known.placeholder) containers.set(c.name, c);
      }
      scheduleDraw();
      $("create-name").value = "";
    } catch (error) {
      showError(error);
    } finally {
      submit.disabled = false;
    }
  }

  // ---------- wiring ----------

  function sortBy(key) {
    sort = sort.key === key ? { key, dir: -sort.dir } : { key, dir: 1 };
    scheduleDraw();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("sign-in").addEventListener("submit", (e) => {
      e.preventDefault();
      const token = $("token").value.trim();
      if (token) signIn(token);
    });
    $("sign-out").addEventListener("click", () => signOut());
    $("filter").addEventListener("input", (e) => {
      filter = e.target.value.trim().toLowerCase();
      scheduleDraw();
    });
    document.querySelectorAll("#containers th[data-sort]").forEach((th) => {
      th.addEventListener("click", () => sortBy(th.dataset.sort));
      th.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          sortBy(th.dataset.sort);
        }
      });
    });
    tbody.addEventListener("click", (e) => {
      const button = e.target.closest("button[data-action]");
      if (!button) return;
      act(button.closest("tr").dataset.name, button.dataset.action, button);
    });
    $("confirm-delete").addEventListener("close", confirmDelete);
    $("create").addEventListener("submit", (e) => {
      e.preventDefault();
      create(e.target);
    });
    // Idle times move on with the clock: only their cells are redrawn.
    setInterval(() => {
      if (!session) return;
      for (const [name, row] of rows) {
        const c = containers.get(name);
        if (c && c.state === "running") row.tr.children[2].textContent = duration(idleMs(c));
      }
    }, IDLE_REDRAW_MS);
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) signIn(saved);
    else $("token").focus();
  });
})();
