// A real client process for half-open tests (test/lifecycle-keepalive.test.ts): connects with a will
// and a keepalive, prints "connected", then only answers the keepalive until it is stopped (SIGSTOP)
// or killed.
//   node test/scripts/will-client.ts <port> <clientId> <keepalive s> <willTopic> <willPayload> [protocolVersion]
import mqtt from 'mqtt';

const [port, clientId, keepalive, willTopic, willPayload, version] = process.argv.slice(2);
if (!port || !clientId || !keepalive || !willTopic || willPayload === undefined) {
  process.stderr.write('usage: will-client.ts <port> <clientId> <keepalive> <willTopic> <willPayload> [4|5]\n');
  process.exit(2);
}

const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
  clientId,
  keepalive: Number(keepalive),
  protocolVersion: Number(version ?? 4) as 4 | 5,
  reconnectPeriod: 0,
  will: { topic: willTopic, payload: Buffer.from(willPayload), qos: 1, retain: false },
});
client.on('connect', () => process.stdout.write('connected\n'));
client.on('error', (err) => process.stderr.write(`error: ${err.message}\n`));
client.on('close', () => process.exit(0));
