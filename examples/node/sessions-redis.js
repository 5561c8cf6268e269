// The article's advice for state, "keep workers stateless, use external storage (Redis)":
// sessions live in Redis (express-session with connect-redis and node-redis), so any
// worker can answer any request, and a reload or a scale change loses no session.
//
//   redis-server --port 6379 &
//   (cd examples/node && npm ci)
//   herd run -i max -p 3000 -- node examples/node/sessions-redis.js
//   curl -c jar -X POST 'localhost:3000/login?user=ada'; curl -b jar localhost:3000/count
//
// REDIS_URL (default redis://127.0.0.1:6379) says where Redis is. A worker is ready (it
// listens) only once its Redis client is connected; it closes that client when its server
// has closed, so a stopped worker exits on its own. Routes: sessions-app.js.
const { RedisStore } = require('connect-redis');
const { createClient } = require('redis');
const { sessionsApp, listen } = require('./sessions-app');

async function main() {
  const client = createClient({ url: process.env.REDIS_URL || 'redis://127.0.0.1:6379' });
  client.on('error', (err) => console.error(`Worker ${process.pid}: redis: ${err.message}`));
  await client.connect();

  const app = sessionsApp(new RedisStore({ client, prefix: 'sess:' }));
  listen(app, () => {
    client.close().then(
      () => console.log(`Worker ${process.pid} closed its Redis client`),
      (err) => console.error(`Worker ${process.pid}: closing redis: ${err.message}`),
    );
  });
}

main().catch((err) => {
  console.error(`Worker ${process.pid}: ${err.stack || err}`);
  process.exit(1);
});
