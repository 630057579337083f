import type mqtt from 'mqtt-packet';
import type { Connection } from '../connection.ts';
import { handlePuback, handlePubcomp, handlePubrec, handlePubrel } from './acks.ts';
import { handleConnect } from './connect.ts';
import { handleDisconnect } from './disconnect.ts';
import { handlePingreq } from './pingreq.ts';
import { handlePublish } from './publish.ts';
import { handleSubscribe } from './subscribe.ts';
import { handleUnsubscribe } from './unsubscribe.ts';

/** Routes a parsed packet to its handler; anything a server must not receive closes the connection. */
export function dispatch(conn: Connection, packet: mqtt.Packet): void {
  if (conn.state === 'awaiting-connect') {
    // [MQTT-3.1.0-1] the first packet must be CONNECT.
    if (packet.cmd === 'connect') handleConnect(conn, packet);
    else conn.close('protocol_error');
    return;
  }
  switch (packet.cmd) {
    case 'publish':
      return handlePublish(conn, packet);
    case 'puback':
      return handlePuback(conn, packet);
    case 'pubrec':
      return handlePubrec(conn, packet);
    case 'pubrel':
      return handlePubrel(conn, packet);
    case 'pubcomp':
      return handlePubcomp(conn, packet);
    case 'subscribe':
      return handleSubscribe(conn, packet);
    case 'unsubscribe':
      return handleUnsubscribe(conn, packet);
    case 'pingreq':
      return handlePingreq(conn);
    case 'disconnect':
      return handleDisconnect(conn, packet);
    case 'connect':
      // [MQTT-3.1.0-2] a second CONNECT.
      return conn.close('protocol_error');
    default:
      // CONNACK, SUBACK, UNSUBACK, PINGRESP, AUTH (no enhanced auth offered): not for a server.
      return conn.close('protocol_error');
  }
}
