// The operators' page: the agent's devices, migrations and relays, live from its WebSocket event feed
// (docs/EVENTS.md). No framework and nothing fetched from elsewhere: the agent serves these three files.
// Everything shown comes from the API with the page's token; text goes in with textContent, never as HTML.
'use strict';

(() => {
  const TOKEN_KEY = 'vmp.token';
  const WINDOW_MS = 120_000;
  const SAMPLE_MS = 500;
  const ENDS = new Set(['completed', 'failed', 'cancelled']);

  const view = {
    session: null,
    /** Whether this agent is in a cluster: then the page shows every agent, fed by the cluster feed. */
    clustered: false,
    agents: new Map(),
    devices: new Map(),
    migrations: new Map(),
    relays: new Map(),
    /** Per relay: its last byte count and when, for its rate. */
    relayBytes: new Map(),
    failures: new Map(),
    samples: [],
    socket: null,
    retryMs: 1000,
    dirty: false,
  };
  let token = sessionStorage.getItem(TOKEN_KEY) || '';

  const $ = (selector) => document.querySelector(selector);

  async function api(method, path) {
    const headers = token ? { Authorization: 'Bearer ' + token } : {};
    const response = await fetch(path, { method, headers, cache: 'no-store' });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error((body.error && body.error.message) || response.status + ' ' + response.statusText);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  // ---- formatting ----
  function bytes(n) {
    if (n == null) return '';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    let v = n;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? v : v.toFixed(2)) + ' ' + units[i];
  }
  function rate(n) {
    if (!n) return '';
    return n >= 1e9 ? (n / 1e9).toFixed(2) + ' GB/s' : n >= 1e6 ? (n / 1e6).toFixed(1) + ' MB/s'
      : (n / 1e3).toFixed(0) + ' kB/s';
  }
  function millis(n) {
    return n == null ? '' : (n < 10 ? n.toFixed(1) : Math.round(n)) + ' ms';
  }
  function short(id) {
    return id && id.length > 14 ? id.slice(0, 14) + '…' : (id || '');
  }
  const key = (agent, id) => agent + '/' + id;

  function percent(m) {
    if (m.outcome === 'completed') return 100;
    const done = m.dataBytes || 0;
    if (m.remainingBytes != null && done + m.remainingBytes > 0) {
      return Math.min(99, Math.floor((100 * done) / (done + m.remainingBytes)));
    }
    return m.stateSize > 0 ? Math.min(99, Math.floor((100 * done) / m.stateSize)) : 0;
  }

  // ---- the model, fed by the lists and then by events ----
  function migration(event) {
    const id = event.id || event.migration;
    const agent = event.agent || view.session.agent;
    const k = key(agent, id);
    const record = Object.assign(view.migrations.get(k) || { agent, id }, event);
    record.id = id;
    view.migrations.set(k, record);
    if (record.outcome === 'failed' || record.outcome === 'cancelled') {
      view.failures.set('migration ' + k, {
        agent, what: 'migration ' + id + ' (' + record.role + ', ' + (record.device || '') + ')',
        reason: (record.error || record.outcome) + (record.failedPhase ? ' [in ' + record.failedPhase + ']' : ''),
        when: record.endedAt || new Date().toISOString(),
      });
    }
  }

  function progress(event) {
    const k = key(event.agent, event.migration);
    const record = view.migrations.get(k) || { agent: event.agent, id: event.migration, outcome: 'active' };
    if (record.outcome && record.outcome !== 'active') return;
    Object.assign(record, {
      phase: event.phase, dataBytes: event.dataBytes, stateSize: event.stateSize, role: event.role,
      remainingBytes: event.remainingBytes, rateBytesPerSecond: event.rateBytesPerSecond,
    });
    view.migrations.set(k, record);
  }

  function relay(event) {
    const id = event.id || event.relay;
    const agent = event.agent || view.session.agent;
    const k = key(agent, id);
    const record = Object.assign(view.relays.get(k) || { agent, id }, event);
    record.id = id;
    const moved = (record.toDestination || 0) + (record.toSource || 0);
    const now = performance.now();
    const last = view.relayBytes.get(k);
    record.rate = last && now > last.at && !isEnded(record) ? ((moved - last.bytes) * 1000) / (now - last.at) : 0;
    view.relayBytes.set(k, { bytes: moved, at: now });
    view.relays.set(k, record);
    if (record.phase === 'FAILED' || record.phase === 'CANCELLED') {
      view.failures.set('relay ' + k, {
        agent, what: 'relay ' + id + ' (' + record.role + ', ' + (record.target || '') + ')',
        reason: record.error || record.phase.toLowerCase(), when: record.endedAt || new Date().toISOString(),
      });
    }
  }

  function isEnded(r) {
    return r.phase === 'COMPLETED' || r.phase === 'FAILED' || r.phase === 'CANCELLED';
  }

  function deviceState(event) {
    const k = key(event.agent, event.device);
    const device = view.devices.get(k) || { agent: event.agent, name: event.device };
    device.state = event.to;
    view.devices.set(k, device);
  }

  // The devices of every agent this one knows: itself alone, or each agent of its cluster.
  function agents(cluster) {
    view.clustered = cluster.clustered === true;
    view.agents.clear();
    view.devices.clear();
    for (const a of cluster.agents || []) {
      if (!a.agent) continue;
      view.agents.set(a.agent, a);
      for (const d of a.devices || []) view.devices.set(key(a.agent, d.name), { agent: a.agent, ...d });
    }
  }

  async function loadLists() {
    const [cluster, migrations, relays] = await Promise.all([
      api('GET', '/v1/cluster'), api('GET', '/v1/migrations'), api('GET', '/v1/relays')]);
    agents(cluster);
    for (const m of migrations.migrations) migration(m);
    for (const r of relays.relays) relay(r);
    changed();
  }

  // ---- the feed ----
  function connect() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const params = new URLSearchParams();
    if (view.clustered) params.set('scope', 'cluster');
    if (token) params.set('access_token', token);
    const query = params.toString() ? '?' + params : '';
    const socket = new WebSocket(scheme + '//' + location.host + '/v1/events' + query);
    view.socket = socket;
    socket.onopen = () => {
      view.retryMs = 1000;
      feedStatus(true);
      // What happened while the feed was down is in the lists.
      loadLists().catch((e) => console.warn('reloading the lists failed', e));
    };
    socket.onmessage = (message) => {
      const { type, event } = JSON.parse(message.data);
      if (type === 'migration') {
        migration(event);
        if (ENDS.has(event.event)) refreshDevices();
      } else if (type === 'progress') progress(event);
      else if (type === 'relay') relay(event);
      else if (type === 'device-state') deviceState(event);
      else if (type === 'cluster') refreshDevices();
      changed();
    };
    socket.onclose = () => {
      feedStatus(false);
      if (view.socket === socket) {
        setTimeout(connect, view.retryMs);
        view.retryMs = Math.min(10_000, view.retryMs * 2);
      }
    };
  }

  function refreshDevices() {
    api('GET', '/v1/cluster').then((cluster) => {
      agents(cluster);
      changed();
    }).catch(() => {});
  }

  function feedStatus(on) {
    const badge = $('#feed');
    badge.textContent = on ? 'feed: live' : 'feed: reconnecting';
    badge.className = 'badge ' + (on ? 'on' : 'off');
  }

  // ---- rendering: rows are kept by key and their cells updated, so a button under the pointer stays ----
  function changed() {
    if (!view.dirty) {
      view.dirty = true;
      requestAnimationFrame(render);
    }
  }

  function row(tbody, attribute, k, columns) {
    let tr = tbody.querySelector('tr[' + attribute + '="' + CSS.escape(k) + '"]');
    if (!tr) {
      tr = document.createElement('tr');
      tr.setAttribute(attribute, k);
      for (let i = 0; i < columns; i++) tr.appendChild(document.createElement('td'));
      tbody.prepend(tr);
    }
    return tr.children;
  }

  function text(td, value, title) {
    const s = value == null ? '' : String(value);
    if (td.textContent !== s) td.textContent = s;
    if (title !== undefined) td.title = title || '';
  }

  function bar(td, value, label) {
    let b = td.querySelector('.bar');
    if (!b) {
      b = document.createElement('div');
      b.className = 'bar';
      b.appendChild(document.createElement('div')).className = 'fill';
      b.appendChild(document.createElement('span'));
      td.appendChild(b);
    }
    b.dataset.percent = String(value);
    b.firstChild.style.width = value + '%';
    b.lastChild.textContent = label;
  }

  function buttons(td, wanted) {
    const names = wanted.map((w) => w.name).join(',');
    if (td.dataset.buttons === names) return;
    td.dataset.buttons = names;
    td.replaceChildren(...wanted.map((w) => {
      const button = document.createElement('button');
      button.type = 'button';
      button.className = w.name;
      button.textContent = w.name;
      button.onclick = () => {
        button.disabled = true;
        api('POST', w.path).catch((e) => alert(w.name + ' failed: ' + e.message))
          .finally(() => { button.disabled = false; });
      };
      return button;
    }));
  }

  function render() {
    view.dirty = false;
    const control = view.session.scope === 'control';

    // A device's migration: the active one that names it (device events do not), else what the agent said.
    const holding = new Map();
    for (const m of view.migrations.values()) {
      if (m.outcome === 'active' && m.device) {
        for (const name of m.device.split(',')) holding.set(key(m.agent, name), m.id);
      }
    }
    $('#agents').hidden = !view.clustered;
    const agentRows = $('#agents tbody');
    for (const [name, a] of view.agents) {
      const c = row(agentRows, 'data-agent', name, 5);
      text(c[0], name);
      text(c[1], a.state);
      c[1].className = 'state agent-' + (a.state || '');
      text(c[2], a.state === 'up' ? (a.ready ? 'ready' : 'not ready') : '');
      text(c[3], a.stream || a.host || '');
      text(c[4], a.state === 'gone' ? 'left ' + (a.leftAt || '').replace('T', ' ').replace(/\.\d+Z$/, 'Z')
        : (a.devices || []).length + ' devices');
    }
    for (const tr of agentRows.querySelectorAll('tr[data-agent]')) {
      if (!view.agents.has(tr.getAttribute('data-agent'))) tr.remove();
    }

    const devices = $('#devices tbody');
    for (const [k, d] of view.devices) {
      const c = row(devices, 'data-device', k, 5);
      text(c[0], d.agent);
      text(c[1], d.name);
      text(c[2], d.state || (d.handedOverTo ? 'handed over' : ''));
      c[2].className = 'state state-' + (d.state || '');
      const held = holding.get(k) || d.migration;
      text(c[3], short(held), held);
      text(c[4], d.identity ? [d.identity.backend, d.identity.model, d.identity.driver].filter(Boolean).join(' · ') : '');
    }

    for (const tr of devices.querySelectorAll('tr[data-device]')) {
      if (!view.devices.has(tr.getAttribute('data-device'))) tr.remove();
    }

    const migrations = $('#migrations tbody');
    for (const [k, m] of view.migrations) {
      const c = row(migrations, 'data-migration', k, 12);
      c[0].parentElement.className = m.outcome || 'active';
      text(c[0], m.agent);
      text(c[1], short(m.id), m.id);
      text(c[2], m.role);
      text(c[3], m.device ? m.device + (m.peerDevice && m.peerDevice !== m.device ? ' → ' + m.peerDevice : '') : '');
      text(c[4], m.peer);
      text(c[5], m.phase);
      const p = percent(m);
      bar(c[6], p, p + '%' + (m.dataBytes ? ' · ' + bytes(m.dataBytes) : ''));
      text(c[7], m.outcome === 'active' ? rate(m.rateBytesPerSecond) : rate(m.throughputBytesPerSecond));
      c[8].className = 'downtime';
      text(c[8], millis(m.downtimeMillis));
      c[9].className = 'reason';
      text(c[9], m.switchoverReason, m.switchoverReason);
      c[10].className = 'reason outcome';
      text(c[10], m.outcome === 'active' ? 'active' : m.outcome + (m.error ? ': ' + m.error : ''));
      const actions = [];
      // This agent's API acts on its own migrations; another agent's are acted on at that agent.
      if (control && m.agent === view.session.agent && m.outcome === 'active' && m.role === 'source') {
        actions.push({ name: 'cancel', path: '/v1/migrations/' + encodeURIComponent(m.id) + '/cancel' });
        if (m.phase === 'READY_FOR_SWITCHOVER') {
          actions.push({ name: 'switchover', path: '/v1/migrations/' + encodeURIComponent(m.id) + '/switchover' });
        }
      }
      buttons(c[11], actions);
    }

    const relays = $('#relays tbody');
    for (const [k, r] of view.relays) {
      const c = row(relays, 'data-relay', k, 11);
      c[0].parentElement.className = (r.phase || '').toLowerCase();
      text(c[0], r.agent);
      text(c[1], short(r.id), r.id);
      text(c[2], r.role);
      text(c[3], r.target);
      text(c[4], r.phase);
      text(c[5], (r.channels || []).map((ch) => ch.index + ':' + ch.kind + ' ' + ch.state).join(', '));
      text(c[6], bytes(r.toDestination));
      text(c[7], bytes(r.toSource));
      text(c[8], r.qemu ? millis(r.qemu.wireDowntimeMillis) : '');
      c[9].className = 'reason outcome';
      text(c[9], isEnded(r) ? r.phase.toLowerCase() + (r.error ? ': ' + r.error : '') : 'active');
      const actions = control && r.agent === view.session.agent && !isEnded(r) && r.role === 'source'
        ? [{ name: 'cancel', path: '/v1/relays/' + encodeURIComponent(r.id) + '/cancel' }] : [];
      buttons(c[10], actions);
    }

    const failures = $('#failures');
    const items = [...view.failures.values()].sort((a, b) => (a.when < b.when ? 1 : -1));
    failures.replaceChildren(...items.map((f) => {
      const li = document.createElement('li');
      li.textContent = f.when.replace('T', ' ').replace(/\.\d+Z$/, 'Z') + ' · ' + f.agent + ' · ' + f.what + ': '
        + f.reason;
      return li;
    }));
  }

  // ---- the chart: the rate moved now, sampled twice a second ----
  function sample() {
    const now = Date.now();
    const perMigration = new Map();
    for (const m of view.migrations.values()) {
      if (m.outcome === 'active' && m.rateBytesPerSecond) {
        perMigration.set(m.id, Math.max(perMigration.get(m.id) || 0, m.rateBytesPerSecond));
      }
    }
    const perRelay = new Map();
    for (const r of view.relays.values()) {
      if (!isEnded(r) && r.rate) perRelay.set(r.id, Math.max(perRelay.get(r.id) || 0, r.rate));
    }
    let total = 0;
    perMigration.forEach((v) => { total += v; });
    perRelay.forEach((v) => { total += v; });
    view.samples.push({ at: now, rate: total });
    while (view.samples.length && view.samples[0].at < now - WINDOW_MS) view.samples.shift();
    $('#rate').textContent = rate(total) || '0 B/s';
    draw(now);
  }

  function draw(now) {
    const canvas = $('#chart');
    const g = canvas.getContext('2d');
    const w = canvas.width;
    const h = canvas.height;
    g.clearRect(0, 0, w, h);
    const top = Math.max(1e8, ...view.samples.map((s) => s.rate)) * 1.1;
    g.fillStyle = '#4a5561';
    g.font = '11px system-ui, sans-serif';
    g.fillText(rate(top), 4, 12);
    g.fillText('-2 min', 4, h - 4);
    g.fillText('now', w - 24, h - 4);
    g.strokeStyle = '#4c9be8';
    g.lineWidth = 2;
    g.beginPath();
    view.samples.forEach((s, i) => {
      const x = w - ((now - s.at) / WINDOW_MS) * w;
      const y = h - 16 - (s.rate / top) * (h - 32);
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
  }

  // ---- the token ----
  function showLogin(message) {
    $('#view').hidden = true;
    $('#login').hidden = false;
    $('#login-error').textContent = message || '';
    $('#token').focus();
  }

  $('#login').addEventListener('submit', (e) => {
    e.preventDefault();
    token = $('#token').value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    start();
  });

  $('#logout').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  });

  async function start() {
    try {
      view.session = await api('GET', '/v1/session');
    } catch (e) {
      if (e.status === 401 || e.status === 403) {
        showLogin(token ? e.message : '');
        return;
      }
      $('#agent').textContent = 'agent unreachable: ' + e.message;
      setTimeout(start, 5000);
      return;
    }
    $('#login').hidden = true;
    $('#view').hidden = false;
    $('#logout').hidden = !view.session.secure;
    $('#agent').textContent = 'agent ' + view.session.agent;
    $('#scope').textContent = view.session.secure ? view.session.scope + ' token' : 'security off';
    document.title = 'vfio-migration-proxy · ' + view.session.agent;
    await loadLists();
    connect();
    setInterval(sample, SAMPLE_MS);
  }

  start();
})();
