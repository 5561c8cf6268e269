// Sessions kept in the worker's memory (express-session's MemoryStore), the alternative
// for apps that keep state in memory: with sticky balancing a client's IP picks its
// worker, so its requests reach the worker that holds its session:
//
//   herd run --balance sticky -i max -p 3000 -- node examples/node/sessions-memory.js
//
// That holds while the worker lives: a reload, a restart or a crash of the worker loses
// the sessions it held (sessions-redis.js keeps them), and a client whose worker changes
// (its slot removed by a scale down, another address) starts without one. Routes:
// sessions-app.js.
const session = require('express-session');
const { sessionsApp, listen } = require('./sessions-app');

listen(sessionsApp(new session.MemoryStore()), () => {});
