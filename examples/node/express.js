// The article's "Express with Clustering" (cluster.ts + app.ts, in JavaScript): the same
// startCluster(workerFn) runs under herd, which plays the primary:
//   (cd examples/node && npm ci) && herd run -i max -- node examples/node/express.js
const cluster = require('cluster');
const os = require('os');
const express = require('express');

const port = Number(process.env.APP_PORT || 3000);

function startCluster(workerFn) {
  const numCPUs = os.cpus().length;

  if (cluster.isPrimary) {
    console.log(`Primary process ${process.pid}`);

    // Fork workers
    for (let i = 0; i < numCPUs; i++) {
      const worker = cluster.fork();
      console.log(`Started worker ${worker.process.pid}`);
    }

    // Handle worker events
    cluster.on('exit', (worker, code, signal) => {
      console.log(`Worker ${worker.process.pid} exited (${signal || code})`);

      // Restart worker unless shutting down
      if (!worker.exitedAfterDisconnect) {
        console.log('Starting replacement worker...');
        cluster.fork();
      }
    });

    cluster.on('online', (worker) => {
      console.log(`Worker ${worker.process.pid} is online`);
    });
  } else {
    workerFn();
  }
}

function startServer() {
  const app = express();

  app.get('/', (req, res) => {
    res.json({
      message: 'Hello',
      pid: process.pid,
    });
  });

  app.get('/heavy', (req, res) => {
    // Simulate CPU-intensive work
    let sum = 0;
    for (let i = 0; i < 1e8; i++) {
      sum += i;
    }
    res.json({ sum, pid: process.pid });
  });

  app.listen(port, () => {
    console.log(`Worker ${process.pid} listening on port ${port}`);
  });
}

startCluster(startServer);
