// prom-client's documented pattern for Node's cluster module, unchanged but for the port:
// every process creates an AggregatorRegistry; the primary forks the workers and serves
// the aggregated metrics of all of them; each worker counts its requests.
//
// Under herd the program takes its worker branch (herd sets NODE_UNIQUE_ID), and herd is the
// primary: it asks each worker for its metrics as prom-client's primary would and serves
// the aggregate on the admin listener's /metrics/app, with no change to this file:
//   herd run -i max -p 3000 --admin 127.0.0.1:9100 -- node examples/node/metrics.js
//   curl localhost:9100/metrics/app
const cluster = require('cluster');
const express = require('express');
const client = require('prom-client');

const AggregatorRegistry = client.AggregatorRegistry;
const aggregatorRegistry = new AggregatorRegistry();

if (cluster.isPrimary) {
  for (let i = 0; i < 2; i++) {
    cluster.fork();
  }
  const metricsServer = express();
  metricsServer.get('/cluster_metrics', async (req, res) => {
    try {
      const metrics = await aggregatorRegistry.clusterMetrics();
      res.set('Content-Type', aggregatorRegistry.contentType);
      res.send(metrics);
    } catch (ex) {
      res.statusCode = 500;
      res.send(ex.message);
    }
  });
  metricsServer.listen(3001);
} else {
  client.collectDefaultMetrics();
  const requests = new client.Counter({
    name: 'app_requests_total',
    help: 'Requests served',
    labelNames: ['route'],
  });
  const inFlight = new client.Gauge({
    name: 'app_worker_started_seconds',
    help: 'When the oldest worker started',
    aggregator: 'min',
  });
  inFlight.set(Date.now() / 1000);
  const app = express();
  app.get('/', (req, res) => {
    requests.inc({ route: '/' });
    res.send(`pid=${process.pid} slot=${process.env.NODE_APP_INSTANCE}\n`);
  });
  app.listen(process.env.PORT || 3000);
}
