// Minimal Aedes broker for comparisons: in-memory persistence, plain TCP on loopback.
// Usage: node aedes-server.ts --port 1883 [--redis redis://127.0.0.1:6379]
// With --redis, messages are routed through mqemitter-redis so several instances form a cluster.
// concurrency (messages in flight inside mqemitter) is raised from its default of 100 so the
// emitter is not the first limit hit under load.

import net from 'node:net';
import { parseArgs } from 'node:util';
import { Aedes } from 'aedes';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '1883' },
    host: { type: 'string', default: '127.0.0.1' },
    redis: { type: 'string' },
  },
});

const mq = values.redis ? (await import('mqemitter-redis')).default({ connectionString: values.redis }) : undefined;
const broker = await Aedes.createBroker({ concurrency: 1000, ...(mq ? { mq } : {}) });
// Plain net.createServer as in Aedes' own examples (Nagle on, Node's default).
const server = net.createServer(broker.handle);
server.listen(Number(values.port), values.host, () => {
  process.stdout.write(`aedes listening on ${values.host}:${values.port}${values.redis ? ` via ${values.redis}` : ''}\n`);
});

function shutdown(): void {
  server.close();
  broker.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
