export { Broker } from './server.ts';
export { ConfigError, configSchema, loadConfig, parseConfig, type Config } from './config.ts';
export { createLogger, type Logger } from './logger.ts';
export { DISCONNECT_REASONS, DISCONNECT_REASON_NAMES, type DisconnectReason } from './disconnect-reasons.ts';
