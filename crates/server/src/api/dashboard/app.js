// The operator's dashboard: logs in with the admin key, then reads
// /admin/stats, /admin/parties (every page) and /admin/relays every two
// seconds. Served by the control plane itself (crates/server/src/api/
// dashboard.rs); plain JavaScript, no build step.
//
// Everything shown comes from the server and some of it from peers (party
// and member names), so it is written with textContent only, never as
// markup.
"use strict";

(() => {
  // sessionStorage, not localStorage or a cookie: the key leaves with the
  // tab and is never sent on its own with any request.
  const KEY_ITEM = "lanrage.admin-key";
  const REFRESH_MS = 2000;
  const PAGE_SIZE = 500;
  // A bound on one refresh's requests; past it the list says it is cut.
  const MAX_PAGES = 200;

  const $ = (id) => document.getElementById(id);

  // Bumped by every login and logout, so a refresh that was under way
  // when the key changed drops its answer instead of showing it.
  let generation = 0;
  let timer = null;
  let previous = null; // The last stats sample, for rates.
  let clockSkewMs = 0; // Server time minus ours, when they differ much.
  const partyViews = new Map(); // party_id -> {key, element, ages}
  let relaysView = { key: null, ages: new Map() };

  class Refused extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  class Unreachable extends Error {}

  function storedKey() {
    try {
      return sessionStorage.getItem(KEY_ITEM);
    } catch {
      return null;
    }
  }

  async function api(path, key) {
    let response;
    try {
      response = await fetch(path, {
        headers: { Authorization: `Bearer ${key}`, Accept: "application/json" },
        cache: "no-store",
        credentials: "omit",
        referrerPolicy: "no-referrer",
      });
    } catch {
      throw new Unreachable("the server does not answer");
    }
    noteServerClock(response);
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      const detail = body && typeof body.detail === "string" ? body.detail : response.statusText;
      const error = new Refused(response.status, detail || `HTTP ${response.status}`);
      error.retryAfter = Number(response.headers.get("Retry-After")) || 0;
      throw error;
    }
    return body;
  }

  // "Last seen" is the server's clock; a browser whose clock is off would
  // otherwise show every peer as long silent or seen in the future.
  function noteServerClock(response) {
    const date = Date.parse(response.headers.get("Date") || "");
    if (Number.isNaN(date)) return;
    const skew = date - Date.now();
    // The header has whole seconds: ignore what its rounding explains.
    clockSkewMs = Math.abs(skew) > 3000 ? skew : 0;
  }

  async function allParties(key) {
    const parties = [];
    let after = null;
    for (let page = 0; page < MAX_PAGES; page += 1) {
      const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
      if (after !== null) query.set("after", after);
      const answer = await api(`/admin/parties?${query}`, key);
      parties.push(...answer.parties);
      after = answer.next_after;
      if (after === null || after === undefined) return { parties, complete: true };
    }
    return { parties, complete: false };
  }

  // ---- formatting ----

  function parseTime(text) {
    // The server writes microseconds; Date.parse is only sure of millis.
    return Date.parse(String(text).replace(/(\.\d{3})\d+/, "$1"));
  }

  function ago(text) {
    const at = parseTime(text);
    if (Number.isNaN(at)) return String(text);
    const secs = Math.max(0, Math.round((Date.now() + clockSkewMs - at) / 1000));
    if (secs < 120) return `${secs}s ago`;
    if (secs < 7200) return `${Math.floor(secs / 60)}m ago`;
    if (secs < 172800) return `${Math.floor(secs / 3600)}h ago`;
    return `${Math.floor(secs / 86400)}d ago`;
  }

  function duration(totalSecs) {
    const s = Math.max(0, Math.floor(totalSecs));
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (d > 0) return `${d}d ${h}h`;
    if (h > 0) return `${h}h ${m}m`;
    if (m > 0) return `${m}m ${s % 60}s`;
    return `${s}s`;
  }

  function rate(value) {
    if (value === null) return "measuring…";
    return value >= 100 ? value.toFixed(0) : value.toFixed(1);
  }

  function address(ip, port) {
    return String(ip).includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`;
  }

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  // A cell whose "… ago" text every refresh recomputes, so rows that did
  // not change stay in place (and so do the operator's selection and
  // focus) while their ages still move.
  function agoCell(at) {
    const cell = el("td", ago(at));
    cell.dataset.at = at;
    const time = parseTime(at);
    if (!Number.isNaN(time)) cell.title = new Date(time).toISOString();
    return cell;
  }

  function refreshAges() {
    for (const node of document.querySelectorAll("[data-at]")) {
      node.textContent = ago(node.dataset.at);
    }
  }

  // ---- rendering ----

  function renderStats(stats) {
    const now = performance.now();
    let requests = null;
    let messages = null;
    // A restart (or another instance behind the proxy) resets the totals:
    // start measuring again rather than show a negative or wild rate.
    if (
      previous &&
      stats.uptime_secs >= previous.uptime_secs &&
      stats.requests_total >= previous.requests_total &&
      stats.socket_messages_total >= previous.socket_messages_total &&
      now > previous.at
    ) {
      const secs = (now - previous.at) / 1000;
      requests = (stats.requests_total - previous.requests_total) / secs;
      messages = (stats.socket_messages_total - previous.socket_messages_total) / secs;
    }
    previous = { ...stats, at: now };

    $("server").textContent = `version ${stats.version}`;
    $("stat-parties").textContent = stats.parties;
    $("stat-peers").textContent = stats.peers;
    $("stat-relays").textContent = stats.relays;
    $("stat-sockets").textContent = stats.sockets;
    $("stat-request-rate").textContent = rate(requests);
    $("stat-message-rate").textContent = rate(messages);
    const database = $("stat-database");
    const healthy = stats.database === "ok";
    database.textContent = `${healthy ? "ok" : stats.database} (${Number(stats.database_ms).toFixed(1)} ms)`;
    database.className = healthy ? "good" : "bad";
    $("stat-version").textContent = stats.version;
    $("stat-uptime").textContent = duration(stats.uptime_secs);
  }

  // The party's article, and its members' heartbeat cells by peer ID.
  function partyElement(party) {
    const ages = new Map();
    const article = el("article", null, "party");
    article.dataset.partyId = party.party_id;
    const titleId = `party-${party.party_id}`;
    article.setAttribute("aria-labelledby", titleId);

    const title = el("h3", party.name, "party-name");
    title.id = titleId;
    article.append(title);

    const facts = el("dl", null, "facts");
    const settings = party.settings || {};
    for (const [term, value] of [
      ["Party ID", party.party_id],
      ["Members", `${party.members.length}${settings.max_members ? ` of ${settings.max_members}` : ""}`],
      ["Host", party.host_id],
      ["Host policy", settings.host_policy],
      ["Join policy", settings.join_policy],
      ["Created", party.created_at],
    ]) {
      const pair = el("div");
      const dd = el("dd", term === "Created" ? ago(value) : value);
      if (term === "Created") dd.dataset.at = value;
      pair.append(el("dt", term), dd);
      facts.append(pair);
    }
    article.append(facts);

    const wrap = el("div", null, "scroll");
    const table = el("table", null, "members");
    table.append(el("caption", `Members of ${party.name}`, "visually-hidden"));
    const head = el("thead");
    const headRow = el("tr");
    for (const name of ["Peer", "Name", "Virtual IP", "NAT", "Last heartbeat", "Role"]) {
      const th = el("th", name);
      th.scope = "col";
      headRow.append(th);
    }
    head.append(headRow);
    const body = el("tbody");
    for (const member of party.members) {
      const row = el("tr");
      row.dataset.peerId = member.peer_id;
      const peer = el("th", member.peer_id);
      peer.scope = "row";
      row.append(peer, el("td", member.name, "member-name"), el("td", member.virtual_ip, "mono"));
      const heartbeat = agoCell(member.last_seen);
      ages.set(member.peer_id, heartbeat);
      row.append(el("td", String(member.nat_type).replaceAll("_", " ")), heartbeat);
      const role = el("td");
      if (member.peer_id === party.host_id) {
        row.classList.add("host");
        role.append(el("span", "host", "badge"));
      }
      if (member.verified) {
        role.append(el("span", "verified key", "badge quiet"));
      }
      row.append(role);
      body.append(row);
    }
    table.append(head, body);
    wrap.append(table);
    article.append(wrap);
    return { element: article, ages };
  }

  function renderParties(parties, complete) {
    parties.sort((a, b) => parseTime(b.created_at) - parseTime(a.created_at));
    const container = $("parties");
    const seen = new Set();
    const ordered = [];
    for (const party of parties) {
      seen.add(party.party_id);
      // Ages move on their own; only a real change rebuilds the party.
      const key = JSON.stringify(party, (name, value) => (name === "last_seen" ? undefined : value));
      let view = partyViews.get(party.party_id);
      if (!view || view.key !== key) {
        view = { key, ...partyElement(party) };
        partyViews.set(party.party_id, view);
      }
      ordered.push(view.element);
    }
    for (const id of [...partyViews.keys()]) {
      if (!seen.has(id)) partyViews.delete(id);
    }
    // Heartbeat times are left out of the key above, so write them here.
    for (const party of parties) {
      const { ages } = partyViews.get(party.party_id);
      for (const member of party.members) {
        const cell = ages.get(member.peer_id);
        if (cell) cell.dataset.at = member.last_seen;
      }
    }
    const current = [...container.children];
    if (current.length !== ordered.length || current.some((node, i) => node !== ordered[i])) {
      container.replaceChildren(...ordered);
    }
    $("no-parties").hidden = parties.length > 0;
    $("party-count").textContent = complete ? `(${parties.length})` : `(first ${parties.length})`;
  }

  function renderRelays(relays) {
    const key = JSON.stringify(relays, (name, value) => (name === "last_seen" ? undefined : value));
    if (key !== relaysView.key) {
      relaysView = { key, ages: new Map() };
      const rows = relays.map((entry) => {
        const relay = entry.relay;
        const row = el("tr");
        row.dataset.relayId = relay.relay_id;
        const id = el("th", relay.relay_id);
        id.scope = "row";
        const state = el("td");
        state.append(el("span", entry.state, `badge state-${entry.state}`));
        const load = el("td");
        if (entry.load === null || entry.load === undefined) {
          load.textContent = "unknown";
        } else {
          const meter = el("meter");
          meter.min = 0;
          meter.max = 1;
          meter.value = entry.load;
          meter.setAttribute("aria-hidden", "true");
          load.append(meter, ` ${Math.round(entry.load * 100)}%`);
        }
        const sessions = entry.sessions === null || entry.sessions === undefined ? "?" : entry.sessions;
        const seen = agoCell(entry.last_seen);
        relaysView.ages.set(relay.relay_id, seen);
        row.append(
          id,
          el("td", address(relay.public_ip, relay.port), "mono"),
          el("td", relay.region),
          state,
          el("td", `${sessions} / ${relay.capacity}`),
          load,
          seen,
        );
        return row;
      });
      $("relays").replaceChildren(...rows);
    }
    for (const entry of relays) {
      const cell = relaysView.ages.get(entry.relay.relay_id);
      if (cell) cell.dataset.at = entry.last_seen;
    }
    $("no-relays").hidden = relays.length > 0;
    $("relays-table").hidden = relays.length === 0;
    $("relay-count").textContent = `(${relays.length})`;
  }

  // The time of the last update is not announced (it would be, every two
  // seconds); a problem is, once, and again only when it changes.
  function setStatus(updated, problem) {
    if (updated) $("status").textContent = updated;
    const alert = $("problem");
    if (alert.textContent !== (problem || "")) alert.textContent = problem || "";
    alert.hidden = !problem;
  }

  // ---- the loop ----

  async function refresh(mine) {
    const key = storedKey();
    if (!key || mine !== generation) return;
    let wait = REFRESH_MS;
    try {
      const [stats, parties, relays] = await Promise.all([
        api("/admin/stats", key),
        allParties(key),
        api("/admin/relays", key),
      ]);
      if (mine !== generation) return;
      renderStats(stats);
      renderParties(parties.parties, parties.complete);
      renderRelays(relays.relays);
      refreshAges();
      setStatus(`Updated ${new Date().toLocaleTimeString()}`, "");
    } catch (error) {
      if (mine !== generation) return;
      if (error instanceof Refused && (error.status === 401 || error.status === 403)) {
        // The key is wrong, or was changed on the server: ask again.
        logOut(error.message);
        return;
      }
      if (error instanceof Refused && error.status === 429) {
        wait = Math.max(REFRESH_MS, error.retryAfter * 1000);
      }
      const what = error instanceof Refused ? `${error.message} (HTTP ${error.status})` : error.message;
      refreshAges();
      setStatus("", `Not updated: ${what}; retrying. What is shown may be out of date.`);
    }
    if (mine === generation) timer = setTimeout(() => refresh(mine), wait);
  }

  function showDashboard() {
    $("login").hidden = true;
    $("dashboard").hidden = false;
    $("logout").hidden = false;
  }

  function showLogin(message) {
    $("dashboard").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    const error = $("login-error");
    error.textContent = message || "";
    error.hidden = !message;
    $("admin-key").setAttribute("aria-invalid", message ? "true" : "false");
    $("admin-key").focus();
  }

  function start() {
    generation += 1;
    clearTimeout(timer);
    previous = null;
    showDashboard();
    $("status").textContent = "Loading…";
    setStatus("", "");
    refresh(generation);
  }

  // Forgets the key and everything it showed.
  function logOut(message) {
    generation += 1;
    clearTimeout(timer);
    try {
      sessionStorage.removeItem(KEY_ITEM);
    } catch {
      // Storage refused: nothing was kept either.
    }
    previous = null;
    partyViews.clear();
    relaysView = { key: null, ages: new Map() };
    $("parties").replaceChildren();
    $("relays").replaceChildren();
    $("server").textContent = "";
    for (const node of document.querySelectorAll(".stats dd")) node.textContent = "–";
    showLogin(message);
  }

  async function logIn(event) {
    event.preventDefault();
    const input = $("admin-key");
    const key = input.value.trim();
    if (!key) {
      showLogin("Enter the admin key.");
      return;
    }
    const button = $("login-button");
    button.disabled = true;
    try {
      // Tried before it is kept, so a wrong key is never stored.
      await api("/admin/stats", key);
      sessionStorage.setItem(KEY_ITEM, key);
      input.value = "";
      start();
    } catch (error) {
      showLogin(error instanceof Unreachable ? "The server does not answer; try again." : error.message);
    } finally {
      button.disabled = false;
    }
  }

  function init() {
    $("login-form").addEventListener("submit", logIn);
    $("logout").addEventListener("click", () => logOut(""));
    if (storedKey()) {
      start();
    } else {
      showLogin("");
    }
  }

  init();
})();
