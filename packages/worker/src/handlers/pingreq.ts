import type { Connection } from '../connection.ts';

/** [MQTT-3.12.4-1] PINGREQ gets PINGRESP. */
export function handlePingreq(conn: Connection): void {
  conn.send({ cmd: 'pingresp' });
}
