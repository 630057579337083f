import type mqtt from 'mqtt-packet';
import type { Connection } from '../connection.ts';

export function handleUnsubscribe(conn: Connection, packet: mqtt.IUnsubscribePacket): void {
  const ctx = conn.ctx;
  const session = conn.session!;
  if (!packet.unsubscriptions || packet.unsubscriptions.length === 0) return conn.close('protocol_error'); // [MQTT-3.10.3-2]
  const codes: number[] = [];
  const waits: Array<Promise<void>> = [];
  for (const filter of packet.unsubscriptions) {
    const sub = session.subscriptions.get(filter);
    if (!sub) {
      // v5 0x11 No subscription existed; the connection stays up [MQTT-3.11.3-?].
      codes.push(0x11);
      continue;
    }
    const p = ctx.unsubscribe(sub);
    if (p) waits.push(p);
    codes.push(0);
  }
  // Kept in the router as it changes (a worker crash re-homes the session from that copy).
  if (codes.includes(0) && session.expiryInterval > 0) ctx.hub.tell({ op: 'save-session', session: session.toStored() });
  // [MQTT-3.10.4-4] UNSUBACK even when nothing was removed.
  const ack = (): void =>
    conn.send(conn.version === 5 ? ({ cmd: 'unsuback', messageId: packet.messageId, reasonCode: 0, granted: codes } as unknown as mqtt.IUnsubackPacket) : ({ cmd: 'unsuback', messageId: packet.messageId } as mqtt.IUnsubackPacket));
  if (waits.length === 0) ack();
  else void Promise.all(waits).then(() => conn.state === 'connected' && ack());
}
