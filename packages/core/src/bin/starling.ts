#!/usr/bin/env node
// Starts one Starling node: `node packages/core/src/bin/starling.ts [--config file] [--port 1883] …`
import { ConfigError, loadConfig } from '../config.ts';
import { createLogger } from '../logger.ts';
import { Broker } from '../server.ts';

let config;
try {
  config = loadConfig();
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`starling: ${err.message}\n`);
    process.exit(2);
  }
  throw err;
}

const log = createLogger(config.logLevel, { node: config.nodeId });
const broker = new Broker(config, log);

process.on('unhandledRejection', (reason) => log.error({ err: reason }, 'unhandled rejection'));

let signalled = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (signalled) return;
    signalled = true;
    log.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      log.warn('shutdown took too long; exiting');
      process.exit(0);
    }, config.timeouts.drainMs + config.timeouts.shutdownMs + 2000);
    force.unref();
    broker.stop().then(
      () => process.exit(0),
      (err: Error) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  });
}

broker.start().catch((err: Error) => {
  log.fatal({ err }, 'start failed');
  process.exit(1);
});
