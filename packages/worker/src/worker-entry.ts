// A session worker: owns the connections the main thread hands it, their sessions and subscriptions.
import type { Socket } from 'node:net';
import { parentPort, workerData } from 'node:worker_threads';
import { createLogger } from '@starling/core/logger.ts';
import { HUB, type Envelope, type HubCommand, type ToWorker, type WorkerData } from '@starling/core/thread-messages.ts';
import { Connection } from './connection.ts';
import { WorkerContext } from './context.ts';
import { deliverLocal, routeMessage } from './delivery.ts';
import { HubClient } from './hub-client.ts';
import { Mesh } from '@starling/core/mesh.ts';
import { detachSession, expireSessions, mergeHandover, releaseCollected, restoreSession } from './session-lifecycle.ts';
import { startSweep } from './sweep.ts';
import { acceptSocket, reloadTls } from './transports/accept.ts';

const data = workerData as WorkerData;
const port = parentPort!;
const log = createLogger(data.config.logLevel, { worker: data.workerId, node: data.nodeId });

const mesh = new Mesh(data.workerId, (_from, batch: Envelope[]) => {
  for (const e of batch) deliverLocal(ctx, e.m, e.normal, e.groups);
});
const hub = new HubClient(port, data.config.timeouts.requestMs);
const ctx = new WorkerContext({ config: data.config, workerId: data.workerId, nodeId: data.nodeId, log, mesh, hub });
mesh.addPeer(HUB, port, false);

// Ready once every existing peer (and the hub) has sent its routes: before that a publish could miss them.
const awaitingSync = new Set<number>([HUB, ...data.peers]);
mesh.syncDone = (from) => {
  awaitingSync.delete(from);
  if (awaitingSync.size === 0) port.postMessage({ t: 'ready' });
};

async function runCommand(cmd: HubCommand): Promise<unknown> {
  switch (cmd.op) {
    case 'detach':
      return detachSession(ctx, cmd.clientId, cmd.keepSession, cmd.collect === true);
    // Both end a cut between deliveries: first, whatever peers (other workers, the hub) routed here
    // before being asked must have arrived.
    case 'release-collected':
      await mesh.barrier();
      return releaseCollected(ctx, cmd.clientId);
    case 'merge':
      await mesh.barrier();
      return mergeHandover(ctx, cmd.clientId, cmd.messages);
    case 'adopt':
      // Persistent sessions of a crashed worker continue here, offline, with their subscriptions.
      for (const stored of cmd.sessions) {
        const { session, routes } = restoreSession(ctx, stored, []);
        session.expiresAt = stored.expiryInterval === 0xffffffff ? Number.POSITIVE_INFINITY : Date.now() + stored.expiryInterval * 1000;
        ctx.sessions.set(session.clientId, session);
        await Promise.all(routes);
      }
      return undefined;
    case 'metrics':
      return ctx.metrics.collect(cmd.eventLoop !== false);
    case 'ping':
      return true;
    case 'publish':
      routeMessage(ctx, cmd.message);
      return undefined;
    case 'shutdown': {
      ctx.shuttingDown = true;
      // Answer once the sockets are closed (client closes after DISCONNECT 0x8B, or timeouts.closeGraceMs
      // destroys it): terminating the thread earlier could cut the DISCONNECT and loses the last metrics.
      // The main thread bounds the wait by timeouts.shutdownMs.
      const closed: Array<Promise<unknown>> = [];
      for (const conn of [...ctx.connections.values()]) {
        // Not events.once: it rejects on 'error' (a reset), and a reset socket is closed all the same.
        if (!conn.socket.closed) closed.push(new Promise((resolve) => conn.socket.once('close', resolve)));
        conn.close('server_shutting_down');
      }
      await Promise.all(closed);
      return undefined;
    }
  }
}

port.on('message', (msg: ToWorker) => {
  if (mesh.receive(HUB, msg as never)) return;
  switch (msg.t) {
    case 'socket': {
      // Plain TCP: a Connection at once; TLS, WebSocket, PROXY protocol: after their handshake (transports/).
      acceptSocket(ctx, msg);
      return;
    }
    case 'tls-reload':
      reloadTls(ctx);
      return;
    case 'peer':
      mesh.addPeer(msg.workerId, msg.port, true);
      mesh.syncTo(msg.workerId, ctx.subs.routes());
      return;
    case 'peer-gone':
      mesh.removePeer(msg.workerId);
      return;
    case 'res':
      hub.settle(msg.id, msg.value, msg.error);
      return;
    case 'cmd':
      runCommand(msg.cmd).then(
        (value) => port.postMessage({ t: 'res', id: msg.id, value }),
        (err: Error) => port.postMessage({ t: 'res', id: msg.id, error: err.message }),
      );
      return;
  }
});

startSweep(ctx, (now) => expireSessions(ctx, now));
log.debug('worker started');
