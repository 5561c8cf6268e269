// The worker half of the article's "Graceful Shutdown": herd is the primary and sends
// 'shutdown' with --stop-message; process.send('ready') is readiness (--ready message):
//   herd run -i max --stop-message --ready message -- node examples/node/graceful.js
const http = require('http');

const port = Number(process.env.APP_PORT || 3000);

const server = http.createServer((req, res) => {
    if (req.url === '/slow') {
    console.log(`Worker ${process.pid} serving a slow request`);
    setTimeout(() => res.end(`Worker ${process.pid} (slow)\n`), 1000);
    return;
  }
  res.writeHead(200);
  res.end(`Worker ${process.pid}\n`);
});

server.listen(port, () => process.send?.('ready'));

// Handle shutdown message from primary
process.on('message', (msg) => {
  if (msg === 'shutdown') {
    console.log(`Worker ${process.pid} shutting down...`);

    server.close(() => {
      console.log(`Worker ${process.pid} closed all connections`);
      process.exit(0);
    });

    // Force close after timeout
    setTimeout(() => {
      console.log(`Worker ${process.pid} forcing close`);
      process.exit(0);
    }, 10000);
  }
});
