// The Express app of sessions-redis.js and sessions-memory.js: the same routes, with the
// session store each of them passes in.
//
//   POST /login?user=NAME  starts a session for NAME (its cookie: connect.sid)
//   GET  /me               the session's user, or 401 without a session
//   GET  /count            adds one to the session's counter
//
// Every answer names the process that gave it (pid, cluster worker id, herd's slot), so
// that a client sees which worker answered while its session goes on.
const cluster = require('cluster');
const express = require('express');
const session = require('express-session');

function sessionsApp(store) {
  const app = express();
  app.use(
    session({
      store,
      // Every worker must sign and check cookies with the same secret.
      secret: process.env.SESSION_SECRET || 'herd example: set SESSION_SECRET',
      resave: false,
      saveUninitialized: false,
    }),
  );

  const answer = (req, extra) => ({
    user: req.session.user,
    count: req.session.count,
    ...extra,
    pid: process.pid,
    worker: cluster.worker ? cluster.worker.id : null,
    slot: process.env.HERD_WORKER_ID ?? null,
  });

  app.post('/login', (req, res) => {
    const user = String(req.query.user || '');
    if (!user) return res.status(400).json({ error: 'user=NAME wanted' });
    req.session.user = user;
    req.session.count = 0;
    res.json(answer(req));
  });

  app.get('/me', (req, res) => {
    if (!req.session.user) return res.status(401).json(answer(req, { error: 'no session' }));
    res.json(answer(req));
  });

  app.get('/count', (req, res) => {
    if (!req.session.user) return res.status(401).json(answer(req, { error: 'no session' }));
    req.session.count += 1;
    res.json(answer(req));
  });

  return app;
}

// Listens on APP_PORT (3000); under herd, a cluster worker's listen(port) gets herd's
// socket. At a stop (herd's disconnect, or SIGTERM/SIGINT when run alone) the server
// closes and lets open requests finish; `closed` runs once its last connection is gone.
function listen(app, closed) {
  const port = Number(process.env.APP_PORT || 3000);
  const server = app.listen(port, () => {
    console.log(`Worker ${process.pid} listening on port ${port}`);
  });
  let done = false;
  server.on('close', () => {
    if (done) return;
    done = true;
    closed();
  });
  const stop = () => {
    if (server.listening) server.close();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  return server;
}

module.exports = { sessionsApp, listen };
