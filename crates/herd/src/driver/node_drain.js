// herd's drain for Node http servers, preloaded into the Node workers herd starts
// (`NODE_OPTIONS=--require <this file>`; opt out with `herd run --no-node-drain`, herd.toml
// `node_drain = false`). See herd's README, "Node `cluster` programs".
//
// It does nothing until herd stops this worker: Node cluster's `disconnect` message from
// herd, on which the worker closes its servers. From Node 19 on, `server.close()` also
// closes every idle keep-alive connection at once, racing a client that is sending its
// next request on it (the client sees a reset). During a stop this file defers that: each
// open connection gets its next request answered with `Connection: close` (and is closed
// after that answer), and only connections still idle GRACE_MS later are closed. Outside
// a stop, and for servers the app closes itself, Node's behaviour is unchanged.
'use strict';
(function herdDrain() {
  const GRACE_MS = 1000;
  let stopping = false;
  const draining = new WeakSet();

  function patch(proto) {
    const closeIdle = proto && proto.closeIdleConnections;
    if (typeof closeIdle !== 'function' || closeIdle.herdDrain) return;
    const deferred = function closeIdleConnections() {
      if (!stopping) return closeIdle.apply(this, arguments);
      if (draining.has(this)) return undefined;
      draining.add(this);
      const server = this;
      server.prependListener('request', (req, res) => {
        res.shouldKeepAlive = false;
      });
      setTimeout(() => closeIdle.call(server), GRACE_MS).unref();
      return undefined;
    };
    deferred.herdDrain = true;
    proto.closeIdleConnections = deferred;
  }

  // https.Server copies http's method when the app loads https, after this file: it gets
  // the deferring one too.
  patch(require('http').Server.prototype);
  // Prepended: runs before the cluster worker's own handler closes the servers.
  process.prependListener('internalMessage', (msg) => {
    if (msg && msg.cmd === 'NODE_CLUSTER' && msg.act === 'disconnect') stopping = true;
  });
})();
