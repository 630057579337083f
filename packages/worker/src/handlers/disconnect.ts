import type mqtt from 'mqtt-packet';
import type { Connection } from '../connection.ts';

/** A client's DISCONNECT is a normal end: debug log, will discarded unless v5 reason 0x04. */
export function handleDisconnect(conn: Connection, packet: mqtt.IDisconnectPacket): void {
  const session = conn.session!;
  const expiry = packet.properties?.sessionExpiryInterval;
  if (expiry !== undefined) {
    // [MQTT-3.14.2-2] from 0 at CONNECT to non-zero at DISCONNECT is a protocol error.
    if (session.expiryInterval === 0 && expiry !== 0) return conn.close('protocol_error');
    conn.expiryOnDisconnect = Math.min(expiry, conn.ctx.config.limits.maxSessionExpiry);
  }
  const code = packet.reasonCode ?? 0;
  conn.close(code === 0x04 ? 'normal_with_will' : 'normal');
}
