// The article's "Sticky Sessions" example, in CommonJS and without the TypeScript
// annotations; the logic is unchanged. The only addition is the slot in the answer.
//
// Under herd, herd is the primary: it sets NODE_UNIQUE_ID, so this program takes its worker
// branch, and herd hands it each connection as the 'connection' message, choosing the
// worker by the client's IP (rendezvous hashing, so scaling moves few clients):
//
//   herd run --balance sticky -p 3000 -- node examples/node/sticky.js
//
// The worker's `server.listen(0, 'localhost')` is its readiness. Run alone (`node
// examples/node/sticky.js`), the primary branch below does the article's modulo hashing.
const cluster = require('cluster');
const http = require('http');
const net = require('net');
const os = require('os');

const numCPUs = os.cpus().length;

if (cluster.isPrimary) {
  const workers = [];

  // Fork workers
  for (let i = 0; i < numCPUs; i++) {
    workers.push(cluster.fork());
  }

  // Create proxy server
  const server = net.createServer({ pauseOnConnect: true }, (connection) => {
    // Get client IP for sticky routing
    const remoteAddress = connection.remoteAddress || '';

    // Simple hash to pick worker
    let hash = 0;
    for (let i = 0; i < remoteAddress.length; i++) {
      hash = ((hash << 5) - hash) + remoteAddress.charCodeAt(i);
      hash = hash & hash;
    }

    const workerIndex = Math.abs(hash) % workers.length;
    const worker = workers[workerIndex];

    // Send connection to worker
    worker.send('connection', connection);
  });

  server.listen(3000, () => {
    console.log('Primary listening on port 3000');
  });
} else {
  const server = http.createServer((req, res) => {
    res.writeHead(200);
    res.end(`Handled by worker ${process.pid} slot ${process.env.HERD_WORKER_ID}\n`);
  });

  // Don't bind to port, receive connections from primary
  server.listen(0, 'localhost');

  process.on('message', (message, connection) => {
    if (message === 'connection') {
      server.emit('connection', connection);
      connection.resume();
    }
  });
}
