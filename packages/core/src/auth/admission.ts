// Limits applied at accept, on the main thread, before a socket reaches a worker: connections per
// node and new connections per second per source address. A refused socket is closed (counted in
// starling_connections_refused_total by reason).
import type { Socket } from 'node:net';
import type { Counter } from 'prom-client';
import { AddressRate } from './rate-limit.ts';

export class Admission {
  private readonly maxConnections: number;
  private readonly rate: AddressRate;
  private readonly open: () => number;
  private readonly refused: Counter<'reason'>;

  constructor(limits: { maxConnections: number; connectionRatePerAddress: number }, open: () => number, refused: Counter<'reason'>) {
    this.maxConnections = limits.maxConnections;
    this.rate = new AddressRate(limits.connectionRatePerAddress);
    this.open = open;
    this.refused = refused;
    for (const reason of ['max_connections', 'connection_rate']) refused.inc({ reason }, 0);
  }

  /** false: the socket was refused (destroyed and counted). */
  admit(socket: Socket): boolean {
    if (this.maxConnections > 0 && this.open() >= this.maxConnections) return this.refuse(socket, 'max_connections');
    if (!this.rate.allow(socket.remoteAddress ?? '')) return this.refuse(socket, 'connection_rate');
    return true;
  }

  private refuse(socket: Socket, reason: string): false {
    this.refused.inc({ reason });
    socket.destroy();
    return false;
  }
}
