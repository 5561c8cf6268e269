// flood-worker.mjs — examples/node/basic.mjs plus a flood of worker→primary messages, for
// scripts/bench/flood.sh. A Node cluster program: under herd (NODE_UNIQUE_ID set) it is a
// worker; run alone it is its own primary forking FLOOD_WORKERS (default 2) workers with
// Node's cluster module, and that primary answers {herd:"stats"} itself so the numbers
// compare.
//
// What the worker sends to its primary, by mode:
//   0     nothing (basic.mjs)
//   1     {herd:"count",key:"flood",n:1} as fast as the channel takes them: batches of
//         FLOOD_BATCH (100) per setImmediate turn while process.send() says the channel's
//         backlog is below Node's threshold; when it says no, the next batch waits 1 ms.
//         HTTP requests are served between the batches.
//   req   one {herd:"count",key:"flood",n:1} per HTTP request (a request counter, as the
//         article's stats.js does)
// The mode starts as FLOOD (default 0). On SIGUSR2 the worker reads "MODE SEQ" from the
// file FLOOD_CTL, switches to MODE and asks its primary for {herd:"stats"}; when the answer
// comes it prints one line
//   FLOODSTAT pid=PID seq=SEQ mode=MODE t=<ms since epoch> total=<primary's flood counter> sent=<n>
// (total = every flood message the primary has processed, from all workers; those this
// worker sent before the stats request are included: one channel keeps its order).
// Port: APP_PORT (default 3000).
import cluster from 'cluster';
import fs from 'fs';
import http from 'http';

const port = Number(process.env.APP_PORT || 3000);
const BATCH = Number(process.env.FLOOD_BATCH || 100);

if (cluster.isPrimary) {
  // Node's own primary: counts the flood like herd does, answers stats requests.
  let total = 0;
  const n = Number(process.env.FLOOD_WORKERS || 2);
  for (let i = 0; i < n; i++) cluster.fork();
  cluster.on('message', (worker, msg) => {
    if (msg && msg.herd === 'count') total += msg.n ?? 1;
    else if (msg && msg.herd === 'stats') worker.send({ herd: 'stats', counters: { flood: { total } } });
  });
  cluster.on('exit', (worker, code, signal) => console.log(`Worker ${worker.process.pid} died (${code ?? signal})`));
} else {
  let mode = process.env.FLOOD || '0';
  let sent = 0;
  let seq = 0;
  let looping = false;
  const msg = { herd: 'count', key: 'flood', n: 1 };

  const flood = () => {
    if (mode !== '1') { looping = false; return; }
    for (let i = 0; i < BATCH; i++) {
      sent++;
      if (!process.send(msg)) { setTimeout(flood, 1); return; }
    }
    setImmediate(flood);
  };
  const apply = () => {
    if (mode === '1' && !looping) { looping = true; setImmediate(flood); }
  };

  process.on('message', (m) => {
    if (m && m.herd === 'stats') {
      const total = m.counters?.flood?.total ?? 0;
      console.log(`FLOODSTAT pid=${process.pid} seq=${seq} mode=${mode} t=${Date.now()} total=${total} sent=${sent}`);
    }
  });
  process.on('SIGUSR2', () => {
    try {
      const [m, s] = fs.readFileSync(process.env.FLOOD_CTL, 'utf8').trim().split(/\s+/);
      mode = m; seq = Number(s);
    } catch (e) {
      console.log(`FLOODSTAT error: ${e.message}`);
      return;
    }
    process.send({ herd: 'stats' });
    apply();
  });

  http.createServer((req, res) => {
    if (mode === 'req') { sent++; process.send(msg); }
    res.writeHead(200);
    res.end(`Hello from worker ${process.pid}\n`);
  }).listen(port);
  apply();
  console.log(`Worker ${process.pid} started (flood mode ${mode})`);
}
