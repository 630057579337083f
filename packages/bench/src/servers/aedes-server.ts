// Minimal Aedes broker for comparisons: in-memory persistence and emitter, plain TCP on loopback.
// Usage: node aedes-server.ts --port 1883
// Aedes options chosen so it is not throttled by defaults meant for untrusted networks:
// concurrency (messages in flight inside mqemitter) raised from 100.

import net from 'node:net';
import { parseArgs } from 'node:util';
import { Aedes } from 'aedes';

const { values } = parseArgs({ options: { port: { type: 'string', default: '1883' }, host: { type: 'string', default: '127.0.0.1' } } });

const broker = await Aedes.createBroker({ concurrency: 1000 });
// Plain net.createServer as in Aedes' own examples (Nagle on, Node's default).
const server = net.createServer(broker.handle);
server.listen(Number(values.port), values.host, () => {
  process.stdout.write(`aedes listening on ${values.host}:${values.port}\n`);
});

function shutdown(): void {
  server.close();
  broker.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
