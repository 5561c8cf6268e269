// herd's dashboard: one page, no framework, no network beyond this listener.
// The server sends a frame a second on /events (after five minutes of history); this
// script keeps each worker's series, draws the tables, the charts and the log tail, and
// sends actions with the token (from the URL's fragment, kept for this tab only).
'use strict';

const WINDOW_MS = 5 * 60 * 1000;
const LOG_LINES = 500;

const state = {
  apps: [],
  // "app/slot" -> [{t, pid, gen, cpu, mem, handed, restarts}]
  series: new Map(),
  // app -> [{t, kind: 'restart'|'reload', text}]
  marks: new Map(),
  selected: null, // {app, slot}
  token: null,
  canAct: false,
  readOnly: 'checking access…',
  logSource: null,
  logKey: null,
  lastFrame: 0,
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

// ---- formatting ---------------------------------------------------------------------

function mib(bytes) {
  return (bytes / 1048576).toFixed(1);
}

function duration(ms) {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

function health(h) {
  if (!h) return '–';
  const parts = [];
  if (h.ok !== null && h.ok !== undefined) {
    if (h.failures > 0) parts.push(`failing ${h.failures}`);
    else if (h.ok) parts.push(`ok ${Math.round(h.latency_ms || 0)} ms`);
    else parts.push(h.passed ? 'failed' : 'pending');
  }
  if (h.heartbeat_age_ms !== null && h.heartbeat_age_ms !== undefined) parts.push(`beat ${h.heartbeat_age_ms} ms`);
  if (h.loop_lag_ms !== null && h.loop_lag_ms !== undefined) parts.push(`lag ${h.loop_lag_ms.toFixed(1)} ms`);
  return parts.join(', ') || '–';
}

// ---- the series ---------------------------------------------------------------------

function keyOf(app, slot) {
  return `${app}/${slot}`;
}

function addPoint(app, w, t) {
  const key = keyOf(app, w.slot);
  let s = state.series.get(key);
  if (!s) {
    s = [];
    state.series.set(key, s);
  }
  const last = s[s.length - 1];
  // During a reload a slot has two workers: the series follows the newest.
  if (last && last.t === t && last.gen > w.gen) return;
  if (last && last.t === t) s.pop();
  const prev = s[s.length - 1];
  if (prev && prev.pid !== w.pid) {
    if (w.restarts > prev.restarts) {
      mark(app, t, 'restart', `slot ${w.slot} restarted (${w.last_exit || 'exited'})`);
    } else if (w.gen > prev.gen) {
      mark(app, t, 'reload', `slot ${w.slot}: generation ${w.gen}`);
    }
  }
  s.push({ t, pid: w.pid, gen: w.gen, cpu: w.cpu, mem: w.mem, handed: w.handed, restarts: w.restarts });
  while (s.length && s[0].t < t - WINDOW_MS) s.shift();
}

function mark(app, t, kind, text) {
  let m = state.marks.get(app);
  if (!m) {
    m = [];
    state.marks.set(app, m);
  }
  if (m.some((x) => x.t === t && x.text === text)) return;
  m.push({ t, kind, text });
  while (m.length && m[0].t < t - WINDOW_MS) m.shift();
}

function onHistory(h) {
  state.series.clear();
  state.marks.clear();
  for (const sample of h.samples) {
    for (const [app, slot, pid, gen, cpu, mem, handed, restarts] of sample.w) {
      addPoint(app, { slot, pid, gen, cpu, mem, handed, restarts }, sample.t);
    }
  }
}

function onStatus(frame) {
  state.lastFrame = frame.t;
  state.apps = frame.apps;
  for (const app of frame.apps) {
    const workers = (app.status && app.status.workers) || [];
    for (const w of workers) {
      if (w.pid === null || w.pid === undefined) continue;
      addPoint(app.name, {
        slot: w.slot, pid: w.pid, gen: w.generation, cpu: w.cpu_percent, mem: w.memory,
        handed: w.handed_over, restarts: w.restarts, last_exit: w.last_exit,
      }, frame.t);
    }
  }
  render();
}

// Connections per second of a worker at the end of its series.
function rate(series) {
  if (!series || series.length < 2) return null;
  const a = series[series.length - 2];
  const b = series[series.length - 1];
  if (a.pid !== b.pid || b.t <= a.t) return null;
  return ((b.handed - a.handed) * 1000) / (b.t - a.t);
}

// ---- the tables ---------------------------------------------------------------------

const COLUMNS = ['Slot', 'PID', 'Generation', 'State', 'Uptime', 'Health', 'CPU %', 'Memory MiB', 'Conn/s', 'Restarts', 'Last exit'];

function render() {
  const apps = $('apps');
  const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.key : null;
  apps.setAttribute('aria-busy', 'false');
  apps.replaceChildren(...(state.apps.length ? state.apps.map(appSection) : [el('p', { class: 'muted' }, 'No app.')]));
  if (focused) {
    const again = apps.querySelector(`[data-key="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
  renderDetail();
}

const KERNEL_BALANCED = 'The kernel spreads connections among the workers (reuseport or shared): herd does not see them.';

// True when the kernel, not herd, spreads the app's connections: herd counts none, so a
// rate of 0 would be a lie. (A proxy app counts them, whatever the balancing.)
function unseen(app) {
  const s = app.status;
  if (!s || (s.balance !== 'reuseport' && s.balance !== 'shared')) return false;
  return !s.workers.some((w) => w.handed_over > 0);
}

function appSection(app) {
  const status = app.status;
  const workers = status ? status.workers.slice().sort((a, b) => a.slot - b.slot || a.generation - b.generation) : [];
  const gens = [...new Set(workers.map((w) => w.generation))].sort((a, b) => a - b);
  const reloading = gens.length > 1 || app.state === 'reloading';
  const id = `app-${app.name.replace(/[^A-Za-z0-9_-]/g, '_')}`;
  const heading = el('h2', { id }, app.name, ' ', el('span', { class: `state state-${app.state}` }, app.state));
  const facts = [];
  if (status) {
    facts.push(`${status.instances} worker${status.instances === 1 ? '' : 's'}`, `balance ${status.balance}`);
    if (status.listen.length) facts.push(`on ${status.listen.join(', ')}`);
    if (status.queued) facts.push(`${status.queued} queued`);
  }
  if (app.reason) facts.push(app.reason);
  const parts = [heading, el('p', { class: 'facts' }, facts.join(' · '))];
  if (reloading && gens.length > 1) {
    const newest = gens[gens.length - 1];
    const done = new Set(workers.filter((w) => w.generation === newest && w.state === 'online').map((w) => w.slot)).size;
    parts.push(el('p', { class: 'reload', role: 'status' },
      `Reloading: generation ${newest} replaces ${gens.slice(0, -1).join(', ')} (${done} of ${status.instances} slots done)`));
  }
  parts.push(actions(app));
  const table = el('table', {},
    el('caption', {}, `Workers of ${app.name}`),
    el('thead', {}, el('tr', {}, ...COLUMNS.map((c) => el('th', { scope: 'col' }, c)))),
    el('tbody', {}, ...(workers.length ? workers.map((w) => row(app, w, gens)) : [emptyRow(app)])));
  parts.push(el('div', { class: 'table-wrap' }, table));
  return el('section', { class: 'app', 'aria-labelledby': id }, ...parts);
}

function emptyRow(app) {
  return el('tr', {}, el('td', { colspan: COLUMNS.length, class: 'muted' }, app.state === 'stopped' ? 'Stopped: no worker.' : 'No worker yet.'));
}

function row(app, w, gens) {
  const key = `${keyOf(app.name, w.slot)}/${w.pid}`;
  const selected = state.selected && state.selected.app === app.name && state.selected.slot === w.slot;
  const old = gens.length > 1 && w.generation < gens[gens.length - 1];
  const r = rate(state.series.get(keyOf(app.name, w.slot)));
  const cells = [
    el('th', { scope: 'row' }, w.slot),
    el('td', {}, w.pid === null || w.pid === undefined ? '–' : w.pid),
    el('td', {}, old ? `${w.generation} (old)` : w.generation),
    el('td', { class: `state-${w.state}` }, w.state),
    el('td', {}, duration(w.uptime_ms)),
    el('td', {}, health(w.health)),
    el('td', { class: 'num' }, w.cpu_percent.toFixed(1)),
    el('td', { class: 'num' }, mib(w.memory)),
    unseen(app)
      ? el('td', { class: 'num muted', title: KERNEL_BALANCED }, '–')
      : el('td', { class: 'num' }, r === null ? '–' : r.toFixed(1)),
    el('td', { class: 'num' }, w.restarts),
    el('td', {}, w.last_exit ? `${w.last_exit}${w.last_exit_ms ? `, ${duration(Date.now() - w.last_exit_ms)} ago` : ''}` : '–'),
  ];
  return el('tr', {
    tabindex: 0,
    class: `${selected ? 'selected' : ''} ${old ? 'old' : ''}`,
    'aria-selected': selected ? 'true' : 'false',
    'data-key': key,
    'data-app': app.name,
    'data-slot': w.slot,
    onclick: () => select(app.name, w.slot),
    onkeydown: (e) => rowKey(e, app.name, w.slot),
  }, ...cells);
}

function rowKey(e, app, slot) {
  const rows = [...document.querySelectorAll('#apps tbody tr[tabindex]')];
  const at = rows.indexOf(e.currentTarget);
  const go = (i) => {
    e.preventDefault();
    if (rows[i]) rows[i].focus();
  };
  switch (e.key) {
    case 'ArrowDown': return go(Math.min(rows.length - 1, at + 1));
    case 'ArrowUp': return go(Math.max(0, at - 1));
    case 'Home': return go(0);
    case 'End': return go(rows.length - 1);
    case 'Enter':
    case ' ':
      e.preventDefault();
      select(app, slot);
      return undefined;
    default: return undefined;
  }
}

function actions(app) {
  if (!state.canAct) {
    return null; // the header says why the page is read-only
  }
  const b = (label, verb, by, danger) => el('button', {
    type: 'button',
    class: danger ? 'danger' : null,
    'data-verb': verb,
    onclick: () => confirmThen(`${label} ${app.name}?`, () => act(app.name, verb, by)),
  }, label);
  return el('div', { class: 'actions', role: 'group', 'aria-label': `Actions on ${app.name}` },
    b('Reload', 'reload'), b('Restart', 'restart'), b('Scale +1', 'scale', 1), b('Scale −1', 'scale', -1), b('Stop', 'stop', undefined, true));
}

// ---- the selected worker --------------------------------------------------------------

function select(app, slot) {
  state.selected = { app, slot };
  render();
  followLog();
  $('detail').hidden = false;
}

function renderDetail() {
  const sel = state.selected;
  if (!sel) return;
  const app = state.apps.find((a) => a.name === sel.app);
  $('detail-title').textContent = app ? `${sel.app}, slot ${sel.slot}` : `${sel.app} (gone)`;
  if (!app) return;
  const keys = [...state.series.keys()].filter((k) => k.slice(0, k.lastIndexOf('/')) === sel.app);
  const now = state.lastFrame || Date.now();
  chart('cpu', keys, sel, (p) => p.cpu, now, (v) => v.toFixed(0));
  chart('mem', keys, sel, (p) => p.mem / 1048576, now, (v) => v.toFixed(0));
  const hide = unseen(app);
  $('fig-conn').hidden = hide;
  $('conn-unseen').hidden = !hide;
  if (!hide) chart('conn', keys, sel, null, now, (v) => v.toFixed(0));
  describe(app);
}

const NS = 'http://www.w3.org/2000/svg';

function svg(tag, attrs) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

// Draws every worker's series of `keys` over the last WINDOW_MS; `pick` null: the
// connection rate between consecutive points.
function chart(name, keys, sel, pick, now, label) {
  const box = $(`chart-${name}`);
  const W = 600;
  const H = 160;
  const from = now - WINDOW_MS;
  const lines = keys.map((k) => {
    const s = state.series.get(k) || [];
    const pts = [];
    for (let i = 0; i < s.length; i++) {
      if (pick) pts.push([s[i].t, pick(s[i])]);
      else if (i > 0 && s[i].pid === s[i - 1].pid && s[i].t > s[i - 1].t) {
        pts.push([s[i].t, ((s[i].handed - s[i - 1].handed) * 1000) / (s[i].t - s[i - 1].t)]);
      }
    }
    return { k, pts };
  });
  let max = 0;
  for (const l of lines) for (const [, v] of l.pts) max = Math.max(max, v);
  max = max > 0 ? max * 1.1 : 1;
  const x = (t) => (((t - from) / WINDOW_MS) * W).toFixed(1);
  const y = (v) => (H - (v / max) * H).toFixed(1);
  const children = [];
  for (const m of state.marks.get(sel.app) || []) {
    if (m.t < from) continue;
    const line = svg('line', { x1: x(m.t), x2: x(m.t), y1: 0, y2: H, class: `mark mark-${m.kind}` });
    const title = svg('title', {});
    title.textContent = `${new Date(m.t).toLocaleTimeString()}: ${m.text}`;
    line.append(title);
    children.push(line);
  }
  lines.forEach((l, i) => {
    if (!l.pts.length) return;
    const slot = l.k.slice(l.k.lastIndexOf('/') + 1);
    const mine = String(sel.slot) === slot;
    const path = svg('polyline', {
      points: l.pts.map(([t, v]) => `${x(t)},${y(v)}`).join(' '),
      class: `series series-${i % 6}${mine ? ' mine' : ''}`,
    });
    const title = svg('title', {});
    title.textContent = `slot ${slot}`;
    path.append(title);
    children.push(path);
  });
  box.replaceChildren(...children);
  const mine = lines.find((l) => l.k === keyOf(sel.app, sel.slot));
  const last = mine && mine.pts.length ? mine.pts[mine.pts.length - 1][1] : null;
  box.setAttribute('aria-label', `${box.closest('figure').querySelector('figcaption').textContent}: slot ${sel.slot} now ${last === null ? 'unknown' : label(last)}, highest of the app ${label(max / 1.1)} over the last 5 minutes`);
  $(`axis-${name}-from`).textContent = '5 min ago';
  $(`axis-${name}-max`).textContent = `max ${label(max / 1.1)} · now`;
}

function describe(app) {
  const dl = $('describe');
  const items = [['Command', (app.command || []).join(' ')], ['Directory', app.cwd || '–']];
  if (app.origin) items.push(['Defined in', app.origin]);
  items.push(['Environment (names only)', (app.env_keys || []).join(', ') || 'none']);
  if (app.status) {
    const reasons = Object.entries(app.status.restarts_by_reason || {}).map(([r, n]) => `${r} ${n}`).join(', ');
    items.push(['Restarts by reason', reasons || 'none']);
  }
  dl.replaceChildren(...items.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
}

function followLog() {
  const sel = state.selected;
  const key = sel ? keyOf(sel.app, sel.slot) : null;
  if (key === state.logKey) return;
  if (state.logSource) state.logSource.close();
  state.logSource = null;
  state.logKey = key;
  const pre = $('log');
  pre.textContent = '';
  const app = state.apps.find((a) => sel && a.name === sel.app);
  if (!app) return;
  $('log-title').textContent = `Output of ${sel.app}, slot ${sel.slot}`;
  if (!app.logs) {
    pre.textContent = 'This listener follows no log file: herd run writes its workers\u2019 output to its own stdout and stderr (under the daemon, the page of `herd dashboard` follows each worker\u2019s log files).';
    return;
  }
  const src = new EventSource(`logs?app=${encodeURIComponent(sel.app)}&slot=${sel.slot}`);
  state.logSource = src;
  const append = (text, cls) => {
    const stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.append(el('span', { class: cls }, `${text}\n`));
    while (pre.childNodes.length > LOG_LINES) pre.firstChild.remove();
    if (stick) pre.scrollTop = pre.scrollHeight;
  };
  src.addEventListener('lines', (e) => {
    const d = JSON.parse(e.data);
    for (const line of d.lines) append(line, `log-${d.stream}`);
  });
  src.addEventListener('gap', (e) => {
    const d = JSON.parse(e.data);
    append(`[${d.stream}: ${d.text}]`, 'log-gap');
  });
}

// ---- actions --------------------------------------------------------------------------

function confirmThen(question, then) {
  const dialog = $('confirm');
  $('confirm-text').textContent = question;
  const yes = $('confirm-yes');
  const no = $('confirm-no');
  const done = (ok) => {
    yes.onclick = null;
    no.onclick = null;
    dialog.close();
    if (ok) then();
  };
  yes.onclick = () => done(true);
  no.onclick = () => done(false);
  dialog.showModal();
  no.focus();
}

async function act(app, verb, by) {
  const body = { app, verb };
  if (by !== undefined) body.by = by;
  try {
    const res = await fetch('api/action', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...tokenHeader() },
      body: JSON.stringify(body),
    });
    const answer = await res.json();
    notice(res.ok, answer.message || answer.error || `${res.status}`);
  } catch (e) {
    notice(false, `${verb} of ${app}: ${e.message}`);
  }
}

function notice(ok, text) {
  const box = $('notices');
  box.prepend(el('p', { class: ok ? 'ok' : 'error' }, `${new Date().toLocaleTimeString()} ${text}`));
  while (box.childNodes.length > 5) box.lastChild.remove();
}

// ---- start ----------------------------------------------------------------------------

function takeToken() {
  const m = /(?:^#|&)token=([0-9A-Za-z]+)/.exec(window.location.hash);
  if (m) {
    sessionStorage.setItem('herd-token', m[1]);
    // Out of the address bar, the history and any screenshot.
    window.history.replaceState(null, '', window.location.pathname + window.location.search);
  }
  state.token = sessionStorage.getItem('herd-token');
}

function tokenHeader() {
  return state.token ? { 'X-Herd-Token': state.token } : {};
}

async function checkAccess() {
  try {
    const res = await fetch('api/access', { headers: tokenHeader() });
    const a = await res.json();
    state.canAct = a.actions;
    state.readOnly = a.actions ? '' : a.why.replace(/^read-only/, 'Read-only');
  } catch (e) {
    state.canAct = false;
    state.readOnly = `Read-only: ${e.message}`;
  }
  $('access').textContent = state.canAct ? 'Actions enabled (this tab has the token).' : state.readOnly;
  $('access').className = state.canAct ? 'ok' : 'muted';
  render();
}

function connect() {
  const src = new EventSource('events');
  const conn = $('conn');
  src.addEventListener('hello', (e) => {
    const h = JSON.parse(e.data);
    conn.textContent = `Live · herd ${h.version} · a frame every ${h.period_ms / 1000} s`;
    conn.className = 'ok';
  });
  src.addEventListener('history', (e) => onHistory(JSON.parse(e.data)));
  src.addEventListener('status', (e) => onStatus(JSON.parse(e.data)));
  src.addEventListener('notice', (e) => {
    const n = JSON.parse(e.data);
    notice(n.ok, n.message);
  });
  src.onerror = () => {
    conn.textContent = 'Connection lost: reconnecting…';
    conn.className = 'error';
  };
}

document.addEventListener('DOMContentLoaded', () => {
  takeToken();
  checkAccess();
  connect();
});
