// silt console: one page, no build step. Reads the admin API (/v1, /v3, /metrics) of the
// broker that serves it, with the browser's credentials for that broker (HTTP Basic when the
// admin API authenticates). Pages refresh themselves every few seconds.
"use strict";

const REFRESH_MS = 2000;
const HISTORY_POINTS = 150; // five minutes at REFRESH_MS

const $ = (selector, root = document) => root.querySelector(selector);
const esc = (text) => String(text ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const num = (n) => (n === null || n === undefined || n < 0 ? "–" : Number(n).toLocaleString("en-US"));

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = !message;
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    credentials: "same-origin",
    headers: options.body ? { "Content-Type": "application/json" } : {},
    ...options,
    body: options.body ? JSON.stringify(options.body) : undefined,
  });
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = text; }
  if (!response.ok) {
    const why = (body && (body.message || body.error)) || `${response.status} ${response.statusText}`;
    throw new Error(`${path}: ${why}`);
  }
  return body;
}

// --- metrics history, kept whatever page is open ------------------------------------------

const history = { at: [], series: {} };
const RATES = {
  produce: "silt_produce_bytes_total",
  fetch: "silt_fetch_bytes_total",
  upload: "silt_archive_uploaded_bytes_total",
  archiveRead: "silt_archive_fetched_bytes_total",
};
let lastTotals = null;
let metrics = {};

function parseMetrics(text) {
  const sums = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    const brace = line.indexOf("{");
    const name = brace > 0 && brace < space ? line.slice(0, brace) : line.slice(0, space);
    const value = Number(line.slice(space + 1));
    if (Number.isFinite(value)) sums[name] = (sums[name] || 0) + value;
  }
  return sums;
}

async function sampleMetrics() {
  metrics = parseMetrics(await api("/metrics"));
  const now = Date.now();
  if (lastTotals) {
    const seconds = Math.max((now - lastTotals.at) / 1000, 0.001);
    for (const [key, name] of Object.entries(RATES)) {
      const rate = Math.max(((metrics[name] || 0) - (lastTotals.values[name] || 0)) / seconds, 0);
      (history.series[key] ||= []).push(rate);
      if (history.series[key].length > HISTORY_POINTS) history.series[key].shift();
    }
    history.at.push(now);
    if (history.at.length > HISTORY_POINTS) history.at.shift();
  }
  lastTotals = { at: now, values: metrics };
}

function chart(title, key) {
  const points = history.series[key] || [];
  const max = Math.max(1, ...points);
  const width = 300;
  const step = width / Math.max(HISTORY_POINTS - 1, 1);
  const offset = width - (points.length - 1) * step;
  const line = points.map((v, i) => `${(offset + i * step).toFixed(1)},${(88 - (v / max) * 84).toFixed(1)}`).join(" ");
  const now = points.length ? points[points.length - 1] : 0;
  return `<div class="card chart" data-chart="${key}">
    <div class="label">${esc(title)} · last ${Math.round((HISTORY_POINTS * REFRESH_MS) / 60000)} min · peak ${bytes(max)}/s</div>
    <div class="now">${bytes(now)}/s</div>
    <svg viewBox="0 0 300 90" preserveAspectRatio="none"><polyline points="${line}"/></svg>
  </div>`;
}

// --- pages --------------------------------------------------------------------------------

let clusterId = null;
const v3 = (tail = "") => `/v3/clusters/${encodeURIComponent(clusterId)}${tail}`;

const pages = {
  async overview(main) {
    const [brokers, topics, groups] = await Promise.all([
      api("/v1/brokers"), api(v3("/topics")), api(v3("/consumer-groups")),
    ]);
    const partitions = topics.data.reduce((sum, t) => sum + t.partitions_count, 0);
    const alive = brokers.brokers.filter((b) => b.alive).length;
    main.innerHTML = `<h1>Overview</h1>
      <div class="cards">
        <div class="card"><div class="value" id="brokers-alive">${alive} / ${brokers.brokers.length}</div><div class="label">brokers alive</div></div>
        <div class="card"><div class="value">${num(topics.data.length)}</div><div class="label">topics</div></div>
        <div class="card"><div class="value">${num(partitions)}</div><div class="label">partitions</div></div>
        <div class="card"><div class="value">${num(groups.data.length)}</div><div class="label">consumer groups here</div></div>
        <div class="card"><div class="value">${num(brokers.moving.length)}</div><div class="label">partitions moving</div></div>
      </div>
      <div class="charts" id="charts">
        ${chart("Produce", "produce")}${chart("Fetch", "fetch")}
        ${chart("Archive uploads", "upload")}${chart("Archive reads", "archiveRead")}
      </div>
      <h2>Brokers</h2>
      <div class="scroll"><table id="brokers"><thead><tr><th>Id</th><th>Kafka</th><th>Admin</th><th>State</th><th class="num">Replicas</th></tr></thead><tbody>
      ${brokers.brokers.map((b) => `<tr><td>${b.id}</td><td>${esc(b.kafka_addr)}</td><td>${esc(b.admin_addr)}</td>
        <td class="${b.alive ? "ok" : "bad"}">${b.alive ? "alive" : "not heard"}${b.draining ? " · draining" : ""}</td>
        <td class="num">${num(b.replicas)}</td></tr>`).join("")}
      </tbody></table></div>`;
  },

  async topics(main) {
    const topics = await api(v3("/topics"));
    const keep = $("#new-topic-name", main)?.value;
    main.innerHTML = `<h1>Topics</h1>
      <form class="controls" id="create-topic">
        <input id="new-topic-name" placeholder="new topic name" required value="${esc(keep || "")}">
        <input id="new-topic-partitions" type="number" min="1" value="1" style="width:6em" title="partitions">
        <button class="primary">Create</button><span id="create-result" class="muted"></span>
      </form>
      <div class="scroll"><table id="topics"><thead><tr><th>Topic</th><th class="num">Partitions</th><th class="num">Replication</th><th></th></tr></thead><tbody>
      ${topics.data.map((t) => `<tr><td><a href="#/topic/${encodeURIComponent(t.topic_name)}">${esc(t.topic_name)}</a></td>
        <td class="num">${num(t.partitions_count)}</td><td class="num">${num(t.replication_factor)}</td>
        <td><a href="#/messages/${encodeURIComponent(t.topic_name)}">messages</a></td></tr>`).join("")}
      </tbody></table></div>`;
    $("#create-topic", main).onsubmit = async (event) => {
      event.preventDefault();
      const name = $("#new-topic-name", main).value.trim();
      try {
        await api(v3("/topics"), { method: "POST", body: { topic_name: name, partitions_count: Number($("#new-topic-partitions", main).value) } });
        location.hash = `#/topic/${encodeURIComponent(name)}`;
      } catch (e) { $("#create-result", main).textContent = e.message; }
    };
    return { live: false };
  },

  async topic(main, name) {
    const [tiering, configs] = await Promise.all([
      api(`/v1/topics/${encodeURIComponent(name)}/tiering`),
      main.dataset.configs === name ? null : api(v3(`/topics/${encodeURIComponent(name)}/configs`)),
    ]);
    const t = tiering.topic;
    const parts = t.partitions;
    let local = 0, archived = 0, backlog = 0;
    for (const p of parts) {
      local += p.local_bytes || 0;
      archived += p.archive?.archived_bytes || 0;
      backlog += p.archive?.backlog_bytes || 0;
    }
    const rows = parts.map((p) => partitionRow(p)).join("");
    if (main.dataset.page !== `topic:${name}`) {
      main.dataset.page = `topic:${name}`;
      main.innerHTML = `<h1>${esc(name)}</h1>
        <p><a href="#/messages/${encodeURIComponent(name)}">Browse messages</a> · compression ${esc(t.compression_type)}
          ${t.parquet_table ? ` · Parquet table <code>${esc(t.parquet_table)}</code>` : ""}</p>
        <div class="cards">
          <div class="card"><div class="value">${num(parts.length)}</div><div class="label">partitions</div></div>
          <div class="card"><div class="value" id="local-bytes"></div><div class="label">on local disk</div></div>
          <div class="card"><div class="value" id="archived-bytes"></div><div class="label">in the bucket</div></div>
          <div class="card"><div class="value" id="backlog-bytes"></div><div class="label">waiting to upload</div></div>
        </div>
        <h2>Partitions <span class="legend"><span><i style="background:var(--archived)"></i>archived</span><span><i style="background:var(--local)"></i>local</span></span></h2>
        <div class="scroll"><table id="partitions"><thead><tr><th>#</th><th>Leader</th><th>Offsets (archived above, local below)</th>
          <th class="num">Archive start</th><th class="num">Archived to</th><th class="num">Local start</th><th class="num">High watermark</th>
          <th class="num">Upload backlog</th><th class="num">Local</th><th class="num">Bucket</th></tr></thead><tbody></tbody></table></div>
        <h2>Configs</h2>
        <div class="scroll"><table id="configs"><thead><tr><th>Name</th><th>Value</th><th>Source</th><th></th></tr></thead><tbody></tbody></table></div>`;
    }
    $("#local-bytes", main).textContent = bytes(local);
    $("#archived-bytes", main).textContent = bytes(archived);
    $("#backlog-bytes", main).textContent = bytes(backlog);
    $("#partitions tbody", main).innerHTML = rows;
    if (configs) {
      main.dataset.configs = name;
      renderConfigs(main, name, configs.data);
    }
  },

  async messages(main, name) {
    if (main.dataset.page !== `messages:${name}`) {
      main.dataset.page = `messages:${name}`;
      const topic = await api(v3(`/topics/${encodeURIComponent(name)}`));
      const options = Array.from({ length: topic.partitions_count }, (_, i) => `<option value="${i}">${i}</option>`).join("");
      main.innerHTML = `<h1>Messages · <a href="#/topic/${encodeURIComponent(name)}">${esc(name)}</a></h1>
        <form class="controls" id="browse">
          <label>Partition <select id="partition">${options}</select></label>
          <select id="mode"><option value="offset">from offset</option><option value="timestamp">from time</option><option value="newest">newest</option></select>
          <input id="from" placeholder="0" size="16">
          <label>Show as <select id="format"><option value="text">text</option><option value="json">JSON</option><option value="hex">hex</option></select></label>
          <label>Limit <input id="limit" type="number" value="50" min="1" max="1000" style="width:5em"></label>
          <button class="primary">Read</button>
        </form>
        <p id="answer" class="muted"></p>
        <div class="scroll"><table id="records"><thead><tr><th class="num">Offset</th><th>Time</th><th>Key</th><th>Value</th><th>Headers</th></tr></thead><tbody></tbody></table></div>`;
      $("#mode", main).onchange = () => {
        const mode = $("#mode", main).value;
        $("#from", main).type = mode === "timestamp" ? "datetime-local" : "text";
        $("#from", main).disabled = mode === "newest";
      };
      $("#format", main).onchange = () => renderRecords(main);
      $("#browse", main).onsubmit = (event) => { event.preventDefault(); readRecords(main, name); };
      await readRecords(main, name);
    }
    return { live: false };
  },

  async groups(main) {
    const groups = await api(v3("/consumer-groups"));
    main.innerHTML = `<h1>Consumer groups</h1>
      <p class="muted">Groups this broker coordinates.</p>
      <div class="scroll"><table id="groups"><thead><tr><th>Group</th><th>State</th><th>Type</th><th>Assignor</th><th class="num">Members</th></tr></thead><tbody>
      ${groups.data.map((g) => `<tr><td><a href="#/group/${encodeURIComponent(g.consumer_group_id)}">${esc(g.consumer_group_id)}</a></td>
        <td>${esc(g.state)}</td><td>${esc(g.type)}</td><td>${esc(g.partition_assignor || "")}</td><td class="num">${num(g.members)}</td></tr>`).join("")}
      </tbody></table></div>`;
  },

  async group(main, id) {
    const base = v3(`/consumer-groups/${encodeURIComponent(id)}`);
    const [group, consumers, lags, summary] = await Promise.all([
      api(base), api(`${base}/consumers`), api(`${base}/lags`), api(`${base}/lag-summary`),
    ]);
    if (main.dataset.page !== `group:${id}`) {
      main.dataset.page = `group:${id}`;
      main.innerHTML = `<h1>Group ${esc(id)}</h1>
        <div class="cards">
          <div class="card"><div class="value" id="group-state"></div><div class="label">state</div></div>
          <div class="card"><div class="value" id="total-lag"></div><div class="label">total lag</div></div>
          <div class="card"><div class="value" id="max-lag"></div><div class="label">largest lag</div></div>
        </div>
        <h2>Members</h2>
        <div class="scroll"><table id="members"><thead><tr><th>Member</th><th>Client</th><th>Host</th><th>Assigned</th></tr></thead><tbody></tbody></table></div>
        <h2>Lag</h2>
        <div class="scroll"><table id="lags"><thead><tr><th>Topic</th><th class="num">Partition</th><th class="num">Committed</th><th class="num">End</th><th class="num">Lag</th><th>Member</th></tr></thead><tbody></tbody></table></div>
        <h2>Reset offsets</h2>
        <form class="controls" id="reset">
          <select id="reset-to"><option value="earliest">to earliest</option><option value="latest">to latest</option><option value="timestamp">to a time</option></select>
          <input id="reset-time" type="datetime-local" step="1" hidden>
          <button class="primary" id="reset-button">Reset</button><span id="reset-result" class="muted"></span>
        </form>`;
      $("#reset-to", main).onchange = () => { $("#reset-time", main).hidden = $("#reset-to", main).value !== "timestamp"; };
      $("#reset", main).onsubmit = async (event) => {
        event.preventDefault();
        const to = $("#reset-to", main).value;
        const body = { to };
        if (to === "timestamp") body.timestamp = new Date($("#reset-time", main).value).getTime();
        try {
          const done = await api(`/v1/groups/${encodeURIComponent(id)}/reset`, { method: "POST", body });
          $("#reset-result", main).textContent = `reset ${done.reset.length} partition(s)`;
          $("#reset-result", main).className = "ok";
          await refresh();
        } catch (e) {
          $("#reset-result", main).textContent = e.message;
          $("#reset-result", main).className = "bad";
        }
      };
    }
    $("#group-state", main).textContent = group.state;
    $("#total-lag", main).textContent = num(summary.total_lag);
    $("#max-lag", main).textContent = num(summary.max_lag);
    $("#reset-button", main).disabled = group.state !== "Empty";
    $("#reset-button", main).title = group.state === "Empty" ? "" : "only an empty group's offsets can be reset";
    $("#members tbody", main).innerHTML = consumers.data.map((c) => `<tr><td>${esc(c.consumer_id)}</td><td>${esc(c.client_id)}</td>
      <td>${esc(c.host)}</td><td>${esc(c.assignments.map((a) => `${a.topic_name}/${a.partition_id}`).join(", "))}</td></tr>`).join("");
    $("#lags tbody", main).innerHTML = lags.data.map((l) => `<tr data-partition="${l.topic_name}/${l.partition_id}"><td>${esc(l.topic_name)}</td>
      <td class="num">${l.partition_id}</td><td class="num">${num(l.current_offset)}</td><td class="num">${num(l.log_end_offset)}</td>
      <td class="num lag">${num(l.lag)}</td><td>${esc(l.client_id || l.consumer_id)}</td></tr>`).join("");
  },

  async archive(main) {
    const status = await api("/v1/status");
    const keep = $("#verify-topic", main)?.value ?? "";
    const m = metrics;
    const hits = m.silt_archive_cache_hits_total || 0;
    const misses = m.silt_archive_cache_misses_total || 0;
    const rows = status.topics.filter((t) => !t.name.startsWith("__")).map((t) => {
      let archivedBytes = 0, backlogSegments = 0, archivedTo = 0, readReplica = null, behind = 0;
      for (const p of t.partitions) {
        archivedBytes += p.archive?.archived_bytes || 0;
        backlogSegments += p.archive?.backlog_segments || 0;
        archivedTo += Math.max(p.archive?.archived_next_offset ?? p.high_watermark ?? 0, 0);
        readReplica ||= p.read_replica_of;
        behind += p.following?.lag_offsets || 0;
      }
      if (readReplica) readReplica = `read replica of ${readReplica}, ${num(behind)} offsets behind`;
      return `<tr><td><a href="#/topic/${encodeURIComponent(t.name)}">${esc(t.name)}</a></td><td class="num">${num(archivedTo)}</td>
        <td class="num">${bytes(archivedBytes)}</td><td class="num">${num(backlogSegments)}</td><td class="replica">${esc(readReplica || "")}</td></tr>`;
    }).join("");
    main.innerHTML = `<h1>Archive</h1>
      <p>${status.archive ? `Target <code>${esc(status.archive)}</code>` : "This node has no archive."}</p>
      <div class="cards">
        <div class="card"><div class="value">${num(m.silt_archive_uploads_total)}</div><div class="label">segments uploaded</div></div>
        <div class="card"><div class="value">${bytes(m.silt_archive_uploaded_bytes_total)}</div><div class="label">uploaded</div></div>
        <div class="card"><div class="value">${num(m.silt_object_store_puts_total)} / ${num(m.silt_object_store_gets_total)}</div><div class="label">object PUTs / GETs</div></div>
        <div class="card"><div class="value">${bytes(m.silt_object_store_read_bytes_total)}</div><div class="label">read from the bucket</div></div>
        <div class="card"><div class="value" id="cache-hit-ratio">${hits + misses ? `${((100 * hits) / (hits + misses)).toFixed(1)}%` : "–"}</div><div class="label">chunk cache hits (${num(hits)} of ${num(hits + misses)})</div></div>
        <div class="card"><div class="value">${num(m.silt_archive_upload_failures_total)} / ${num(m.silt_archive_read_failures_total)}</div><div class="label">upload / read failures</div></div>
      </div>
      <div class="charts">${chart("Archive uploads", "upload")}${chart("Archive reads", "archiveRead")}</div>
      <h2>Topics in the archive</h2>
      <div class="scroll"><table id="archive-topics"><thead><tr><th>Topic</th><th class="num">Offsets archived</th><th class="num">Bucket bytes</th><th class="num">Segments waiting</th><th></th></tr></thead><tbody>${rows}</tbody></table></div>
      ${status.archive_verify ? verifySection(status, keep) : ""}`;
    $("#verify-form", main)?.addEventListener("submit", async (event) => {
      event.preventDefault();
      const topic = $("#verify-topic", main).value;
      try {
        await api(`/v1/archive/verify${topic ? `?topic=${encodeURIComponent(topic)}` : ""}`, { method: "POST" });
        showError("");
        refresh();
      } catch (e) {
        showError(e.message);
      }
    });
  },
};

function partitionRow(p) {
  if (p.hosted === false || p.online === false) {
    return `<tr><td>${p.partition}</td><td colspan="9" class="muted">${esc(p.error || "not on this broker")}</td></tr>`;
  }
  const a = p.archive;
  const archiveStart = a && a.archived_next_offset > 0 ? a.archive_start_offset : null;
  const start = Math.min(archiveStart ?? p.local_start_offset, p.local_start_offset, p.start_offset);
  const end = Math.max(p.high_watermark, 1);
  const span = Math.max(end - start, 1);
  const pct = (o) => `${(((o - start) / span) * 100).toFixed(2)}%`;
  const width = (from, to) => `${Math.max(((to - from) / span) * 100, to > from ? 0.5 : 0).toFixed(2)}%`;
  const archived = archiveStart === null ? "" :
    `<span class="archived" style="left:${pct(archiveStart)};width:${width(archiveStart, a.archived_next_offset)}" title="archived ${archiveStart}..${a.archived_next_offset}"></span>`;
  const local = `<span class="local" style="left:${pct(p.local_start_offset)};width:${width(p.local_start_offset, p.high_watermark)}" title="local ${p.local_start_offset}..${p.high_watermark}"></span>`;
  return `<tr data-partition="${p.partition}"><td>${p.partition}</td><td>${p.replica?.leader ?? "–"}</td>
    <td><div class="bar">${archived}${local}</div></td>
    <td class="num archive-start">${archiveStart === null ? "–" : num(archiveStart)}</td><td class="num archived-to">${a ? num(a.archived_next_offset) : "–"}</td>
    <td class="num local-start">${num(p.local_start_offset)}</td><td class="num hw">${num(p.high_watermark)}</td>
    <td class="num">${a ? `${num(a.backlog_segments)} · ${bytes(a.backlog_bytes)}` : "–"}</td>
    <td class="num">${bytes(p.local_bytes)}</td><td class="num">${a ? bytes(a.archived_bytes) : "–"}</td></tr>`;
}

function renderConfigs(main, topic, configs) {
  const body = $("#configs tbody", main);
  body.innerHTML = configs.map((c) => `<tr data-config="${esc(c.name)}"><td>${esc(c.name)}</td>
    <td><input value="${esc(c.value)}" ${c.is_read_only ? "disabled" : ""} size="28"></td>
    <td class="${c.is_default ? "muted" : ""}">${esc(c.source)}</td>
    <td>${c.is_read_only ? "" : `<button data-action="save">Save</button>`} ${c.is_default ? "" : `<button data-action="reset">Reset</button>`}
      <span class="result"></span></td></tr>`).join("");
  body.onclick = async (event) => {
    const action = event.target.dataset.action;
    if (!action) return;
    const row = event.target.closest("tr");
    const name = row.dataset.config;
    const path = v3(`/topics/${encodeURIComponent(topic)}/configs/${encodeURIComponent(name)}`);
    try {
      if (action === "save") await api(path, { method: "PUT", body: { value: $("input", row).value } });
      else await api(path, { method: "DELETE" });
      renderConfigs(main, topic, (await api(v3(`/topics/${encodeURIComponent(topic)}/configs`))).data);
      $(`tr[data-config="${CSS.escape(name)}"] .result`, main).textContent = "saved";
    } catch (e) {
      $(".result", row).textContent = e.message;
      $(".result", row).className = "result bad";
    }
  };
}

// --- the message browser -------------------------------------------------------------------

let page = null;

async function readRecords(main, topic) {
  const partition = $("#partition", main).value;
  const mode = $("#mode", main).value;
  const from = $("#from", main).value.trim();
  const params = new URLSearchParams({ limit: $("#limit", main).value || "50" });
  if (mode === "newest") params.set("newest", "true");
  else if (mode === "timestamp" && from) params.set("timestamp", String(new Date(from).getTime()));
  else if (mode === "offset" && from) params.set("offset", from);
  try {
    page = await api(`/v1/topics/${encodeURIComponent(topic)}/partitions/${partition}/records?${params}`);
    renderRecords(main);
  } catch (e) {
    $("#answer", main).textContent = e.message;
    $("#records tbody", main).innerHTML = "";
  }
}

function decode(b64, format) {
  if (b64 === null || b64 === undefined) return "null";
  const raw = atob(b64);
  const data = Uint8Array.from(raw, (c) => c.charCodeAt(0));
  if (format === "hex") return Array.from(data, (b) => b.toString(16).padStart(2, "0")).join(" ");
  const text = new TextDecoder("utf-8", { fatal: false }).decode(data);
  if (format === "json") {
    try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return text; }
  }
  return text;
}

function renderRecords(main) {
  if (!page) return;
  const format = $("#format", main).value;
  $("#answer", main).innerHTML = `Answered by <span class="tier ${page.tier}" id="tier">${page.tier}</span>
    · offsets ${num(page.start_offset)}..${num(page.next_offset)} of ${num(page.log_start_offset)}..${num(page.high_watermark)}
    (local from ${num(page.local_start_offset)})`;
  $("#records tbody", main).innerHTML = page.records.map((r) => `<tr data-offset="${r.offset}"><td class="num">${r.offset}</td>
    <td>${esc(new Date(r.timestamp).toISOString())}</td><td class="data key">${esc(decode(r.key, format))}</td>
    <td class="data value">${esc(decode(r.value, format))}</td>
    <td class="data">${esc(r.headers.map((h) => `${h.name}=${decode(h.value, format)}`).join("\n"))}</td></tr>`).join("")
    || `<tr><td colspan="5" class="muted">No records.</td></tr>`;
}

/// The archive page's verification: a form to start one, and the latest run's progress and faults.
function verifySection(status, keep) {
  const run = status.archive_verify;
  const names = status.topics.map((t) => t.name).filter((n) => !n.startsWith("__"));
  const options = [`<option value="">the whole archive</option>`]
    .concat(names.map((n) => `<option value="${esc(n)}"${n === keep ? " selected" : ""}>topic ${esc(n)}</option>`)).join("");
  const what = run.topic ? `topic ${esc(run.topic)}` : "the whole archive";
  const when = run.finished_ms ? ` at ${esc(new Date(run.finished_ms).toISOString())}` : "";
  const summary = {
    never_run: "Not verified since this broker started.",
    running: `Verifying ${what}: ${num(run.segments)} of ${num(run.segments_total)} segments, ${bytes(run.bytes)} of ${bytes(run.bytes_total)} <span class="muted">${esc(run.at)}</span>`,
    ok: `Verified ${what}${when}: ${num(run.partitions)} partitions, ${num(run.segments)} segments, ${bytes(run.bytes)}, all good.`,
    faults: `Verified ${what}${when}: ${num(run.faults_total)} fault(s) in ${num(run.segments)} segments.`,
    failed: `Could not verify ${what}${when}: ${esc(run.error)}`,
  }[run.state];
  const faults = run.faults.map((f) => `<li>${esc(f)}</li>`).join("");
  return `<h2>Verify</h2>
    <form id="verify-form" class="controls"><select id="verify-topic">${options}</select>
      <button class="primary" id="verify-button"${run.running ? " disabled" : ""}>Verify</button></form>
    <p id="verify-state" data-state="${run.state}" class="${{ ok: "ok", faults: "bad", failed: "bad" }[run.state] || ""}">${summary}</p>
    ${faults ? `<ul id="verify-faults">${faults}</ul>` : ""}
    <p class="muted">Reads every manifest, segment and sidecar and checks sizes, CRCs, batches and offsets, as <code>silt archive verify</code> does.</p>`;
}

// --- routing and refresh -------------------------------------------------------------------

let current = null;
let timer = null;

function route() {
  const [, name = "", arg = ""] = location.hash.match(/^#\/([^/]*)\/?(.*)$/) || [];
  const which = { "": "overview", topics: "topics", topic: "topic", messages: "messages", groups: "groups", group: "group", archive: "archive" }[name] || "overview";
  const nav = { topic: "topics", messages: "topics", group: "groups" }[which] || which;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === nav);
  return { which, arg: decodeURIComponent(arg) };
}

async function refresh() {
  const main = $("#main");
  const want = route();
  const key = `${want.which}:${want.arg}`;
  if (current !== key) {
    current = key;
    delete main.dataset.page;
    delete main.dataset.configs;
    main.dataset.live = "true";
  }
  try {
    await sampleMetrics();
    if (main.dataset.live === "true" || main.dataset.rendered !== key) {
      const outcome = await pages[want.which](main, want.arg);
      main.dataset.rendered = key;
      main.dataset.live = outcome && outcome.live === false ? "false" : "true";
    }
    main.dataset.refreshed = String(Date.now());
    showError("");
  } catch (e) {
    showError(e.message);
  }
}

function schedule() {
  clearTimeout(timer);
  timer = setTimeout(async () => { await refresh(); schedule(); }, REFRESH_MS);
}

function setTheme(theme) {
  document.documentElement.dataset.theme = theme;
  localStorage.setItem("silt-theme", theme);
}

async function start() {
  const saved = localStorage.getItem("silt-theme");
  setTheme(saved || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light"));
  $("#theme").onclick = () => setTheme(document.documentElement.dataset.theme === "dark" ? "light" : "dark");
  try {
    const clusters = await api("/v3/clusters");
    clusterId = clusters.data[0].cluster_id;
    $("#cluster").textContent = `cluster ${clusterId}`;
  } catch (e) {
    showError(e.message);
    return;
  }
  window.addEventListener("hashchange", async () => { await refresh(); schedule(); });
  await refresh();
  schedule();
}

start();
