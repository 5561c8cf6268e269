// The article's "Basic Cluster Setup", unchanged but for the port. Under herd the program
// takes its worker branch (herd sets NODE_UNIQUE_ID) and herd is the primary:
//   herd run -i max -- node examples/node/basic.mjs
import cluster from 'cluster';
import http from 'http';
import os from 'os';

const numCPUs = os.cpus().length;
const port = Number(process.env.APP_PORT || 3000);

if (cluster.isPrimary) {
  console.log(`Primary ${process.pid} is running`);
  console.log(`Forking ${numCPUs} workers...`);

  // Fork workers
  for (let i = 0; i < numCPUs; i++) {
    cluster.fork();
  }

  cluster.on('exit', (worker, code, signal) => {
    console.log(`Worker ${worker.process.pid} died`);
    // Optionally restart
    cluster.fork();
  });
} else {
  // Workers share the TCP connection
  http.createServer((req, res) => {
    res.writeHead(200);
    res.end(`Hello from worker ${process.pid}\n`);
  }).listen(port);

  console.log(`Worker ${process.pid} started`);
}
