// The dashboard in a real browser (Debian's Chromium, driven by playwright-core), for
// crates/herd/tests/it/dashboard.rs. Input (environment): HERD_URL, the URL `herd dashboard`
// prints (with the token); HERD_APP and HERD_WORKERS, the app and its number of workers;
// HERD_ARTIFACTS, where screenshots go; CHROMIUM, the browser. Output: one JSON object on
// stdout with what it saw; the Rust test decides.
import { chromium } from 'playwright-core';

const url = process.env.HERD_URL;
const app = process.env.HERD_APP;
const workers = Number(process.env.HERD_WORKERS);
const artifacts = process.env.HERD_ARTIFACTS;
const origin = new URL(url).origin;
const out = { console: [], offsite: [], steps: [] };
const step = (s) => out.steps.push(s);
// The read-only check's own POST is refused on purpose: Chromium reports the 403 on the
// console; that one message is expected, no other.
let refusing = false;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});

// Every page is watched: an error on its console, or a request to anything but herd.
async function open(options, address) {
  const context = await browser.newContext(options);
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error' && !(refusing && m.text().includes('403'))) out.console.push(m.text());
  });
  page.on('pageerror', (e) => out.console.push(`pageerror: ${e.message}`));
  page.on('request', (r) => {
    if (!r.url().startsWith(origin) && !r.url().startsWith('data:')) out.offsite.push(r.url());
  });
  await page.goto(address);
  return { context, page };
}

const rows = (page) => page.$$eval(`#apps tbody tr[data-app="${app}"]`, (trs) => trs.map((tr) => {
  const cells = [...tr.children].map((c) => c.textContent);
  return { key: tr.dataset.key, slot: Number(tr.dataset.slot), pid: Number(cells[1]), gen: cells[2], state: cells[3], restarts: Number(cells[9]) };
}));

async function until(what, timeoutMs, fn) {
  const start = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

try {
  // With the token.
  const { page } = await open({ viewport: { width: 1280, height: 900 } }, url);
  const first = await until('the workers in the table', 20000, async () => {
    const r = await rows(page);
    return r.length === workers && r.every((w) => w.state === 'online') ? r : null;
  });
  out.rows = first.length;
  out.token_left_in_address = page.url().includes('token=');
  out.access = await page.textContent('#access');
  out.buttons = await page.$$eval('button[data-verb]', (b) => b.length);
  step('table');

  // Keyboard: the first row, down, Enter: the second worker is selected.
  await page.focus(`#apps tbody tr[data-key="${first[0].key}"]`);
  await page.keyboard.press('ArrowDown');
  await page.keyboard.press('Enter');
  await until('the detail of slot 1', 5000, async () => (await page.textContent('#detail-title')).includes('slot 1'));
  out.detail = await page.textContent('#detail-title');
  out.log = await until('the output of the selected worker', 10000, async () => {
    const text = await page.textContent('#log');
    return text.trim().length > 0 ? text : null;
  });
  // reuseport (the default): herd does not see connections, and the page says so
  // instead of showing a rate of 0.
  out.conn_cell = await page.$eval(`#apps tbody tr[data-key="${first[0].key}"] td:nth-of-type(8)`, (td) => ({ text: td.textContent, title: td.title }));
  out.conn_chart_hidden = await page.$eval('#fig-conn', (f) => f.hidden);
  out.conn_note = await page.$eval('#conn-unseen', (p) => (p.hidden ? '' : p.textContent));
  step('keyboard');

  // A killed worker: its restart on the page within 2 s.
  const victim = first.find((w) => w.slot === 0);
  process.kill(victim.pid, 'SIGKILL');
  const killed = Date.now();
  const replaced = await until('the restart on the page', 20000, async () => {
    const r = await rows(page);
    // Shown: the slot's new worker, with its restart counted (starting or online).
    return r.find((w) => w.slot === 0 && w.pid && w.pid !== victim.pid && w.restarts >= 1);
  });
  out.restart_ms = Date.now() - killed;
  out.restart_pid = replaced.pid;
  // It is marked on the charts' timeline (slot 1 is selected; the marks are the app's).
  out.restart_marks = await until('the restart mark', 5000, async () => {
    const n = await page.$$eval('#chart-cpu line.mark-restart', (l) => l.length);
    return n > 0 ? n : null;
  });
  step('restart');
  await page.screenshot({ path: `${artifacts}/dashboard.png`, fullPage: true });

  // Reload with the token: confirm, then every worker of the next generation.
  const next = String(Math.max(...(await rows(page)).map((w) => Number(w.gen))) + 1);
  await page.click('button[data-verb="reload"]');
  await page.click('#confirm-yes');
  let sawRolling = false;
  await until(`generation ${next} everywhere`, 30000, async () => {
    if (await page.$('.reload')) sawRolling = true;
    const r = await rows(page);
    return r.length === workers && r.every((w) => w.gen === next && w.state === 'online');
  });
  out.reload_generation = Number(next);
  out.reload_rolling_seen = sawRolling;
  // The answer to the POST says "asked"; the outcome comes on the stream when it is over.
  out.reload_notice = await until('the reload outcome', 10000, async () => {
    const notes = await page.$$eval('#notices p', (ps) => ps.map((p) => ({ text: p.textContent, ok: p.className === 'ok' })));
    return notes.find((n) => n.text.includes(app) && !n.text.endsWith('asked')) || null;
  });
  out.reload_marks = await page.$$eval('#chart-cpu line.mark-reload', (l) => l.length);
  step('reload');

  // Without the token: no action buttons, the reason, and a direct POST refused.
  const ro = await open({ viewport: { width: 1280, height: 900 } }, `${origin}/`);
  await until('the read-only table', 20000, async () => (await rows(ro.page)).length === workers);
  out.readonly_buttons = await ro.page.$$eval('button[data-verb]', (b) => b.length);
  out.readonly_text = await ro.page.textContent('#access');
  refusing = true;
  out.readonly_post = await ro.page.evaluate(async (a) => {
    const res = await fetch('/api/action', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ app: a, verb: 'stop' }) });
    return { status: res.status, body: await res.json() };
  }, app);
  refusing = false;
  step('read-only');

  // 200 % zoom: a 1280 px screen at twice the size is 640 CSS px wide; nothing may need a
  // horizontal scroll of the page (the tables scroll in their own box).
  const zoom = await open({ viewport: { width: 640, height: 450 }, deviceScaleFactor: 2 }, `${origin}/`);
  await until('the zoomed table', 20000, async () => (await rows(zoom.page)).length === workers);
  out.zoom_overflow = await zoom.page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  await zoom.page.screenshot({ path: `${artifacts}/dashboard-zoom200.png` });
  step('zoom');

  // Dark mode follows the system.
  const dark = await open({ viewport: { width: 1280, height: 900 }, colorScheme: 'dark' }, `${origin}/`);
  await until('the dark table', 20000, async () => (await rows(dark.page)).length === workers);
  out.dark_background = await dark.page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  await dark.page.screenshot({ path: `${artifacts}/dashboard-dark.png` });
  step('dark');
} catch (e) {
  out.error = e.message;
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
