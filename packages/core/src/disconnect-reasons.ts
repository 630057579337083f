// The closed set of ways a connection ends. Logs and the disconnects_total metric use the same names.

export type Initiator = 'client' | 'server' | 'network';
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

interface ReasonInfo {
  initiator: Initiator;
  /** Whether the stored will is published (MQTT-3.1.2-8 / -10). */
  publishesWill: boolean;
  level: LogLevel;
  /** v5 DISCONNECT reason code the server sends, when it sends one. */
  code?: number;
}

export const DISCONNECT_REASONS = {
  normal: { initiator: 'client', publishesWill: false, level: 'debug' },
  normal_with_will: { initiator: 'client', publishesWill: true, level: 'debug' },
  keepalive_timeout: { initiator: 'server', publishesWill: true, level: 'info', code: 0x8d },
  connect_timeout: { initiator: 'server', publishesWill: false, level: 'info' },
  socket_closed: { initiator: 'network', publishesWill: true, level: 'info' },
  socket_error: { initiator: 'network', publishesWill: true, level: 'info' },
  malformed_packet: { initiator: 'server', publishesWill: true, level: 'warn', code: 0x81 },
  protocol_error: { initiator: 'server', publishesWill: true, level: 'warn', code: 0x82 },
  packet_too_large: { initiator: 'server', publishesWill: true, level: 'warn', code: 0x95 },
  receive_maximum_exceeded: { initiator: 'server', publishesWill: true, level: 'warn', code: 0x93 },
  topic_alias_invalid: { initiator: 'server', publishesWill: true, level: 'warn', code: 0x94 },
  not_authorized: { initiator: 'server', publishesWill: true, level: 'info', code: 0x87 },
  bad_credentials: { initiator: 'server', publishesWill: false, level: 'info' },
  /** CONNECT refused: too many password checks pending (v5 0x89 / v3 0x03). */
  server_busy: { initiator: 'server', publishesWill: false, level: 'info' },
  session_taken_over: { initiator: 'server', publishesWill: true, level: 'info', code: 0x8e },
  server_shutting_down: { initiator: 'server', publishesWill: true, level: 'info', code: 0x8b },
  worker_crash: { initiator: 'server', publishesWill: true, level: 'error' },
  kicked: { initiator: 'server', publishesWill: true, level: 'info', code: 0x98 },
  quota_exceeded: { initiator: 'server', publishesWill: true, level: 'warn', code: 0x97 },
  slow_consumer: { initiator: 'server', publishesWill: true, level: 'warn', code: 0x97 },
} as const satisfies Record<string, ReasonInfo>;

export type DisconnectReason = keyof typeof DISCONNECT_REASONS;

export const DISCONNECT_REASON_NAMES = Object.keys(DISCONNECT_REASONS) as DisconnectReason[];

export function reasonInfo(reason: DisconnectReason): ReasonInfo {
  return DISCONNECT_REASONS[reason];
}
