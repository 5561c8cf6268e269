// The worker half of the article's "Shared State with IPC": herd keeps the counters that
// the article's primary kept (see the README's "Messages and shared state"):
//   herd run -i max -- node examples/node/stats.js
const http = require('http');

const port = Number(process.env.APP_PORT || 3000);

const server = http.createServer((req, res) => {
  // Notify primary of request
  process.send?.({ herd: 'count', key: 'requests' });

  if (req.url === '/stats') {
    process.send?.({ herd: 'stats' });

    const handler = (msg) => {
      if (msg && msg.herd === 'stats') {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(msg.counters));
        process.off('message', handler);
      }
    };

    process.on('message', handler);
  } else {
    res.writeHead(200);
    res.end(`Worker ${process.pid}\n`);
  }
});

server.listen(port);
