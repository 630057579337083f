// PROXY protocol v1 (text) and v2 (binary) headers (haproxy's proxy-protocol.txt): the client's real
// address when the broker sits behind a TCP load balancer.

export type ProxyParse =
  | { status: 'incomplete' }
  | { status: 'error'; reason: string }
  /** address null: a LOCAL/UNKNOWN header (health check): keep the socket's own address. */
  | { status: 'ok'; consumed: number; address: string | null; port: number | null };

const V2_SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_MAX = 107;

export function parseProxyHeader(buf: Buffer): ProxyParse {
  if (buf.length === 0) return { status: 'incomplete' };
  if (buf[0] === 0x50) return parseV1(buf); // 'P'
  if (buf[0] === 0x0d) return parseV2(buf);
  return { status: 'error', reason: 'no PROXY protocol header' };
}

function parseV1(buf: Buffer): ProxyParse {
  const prefix = 'PROXY ';
  const head = buf.subarray(0, Math.min(buf.length, prefix.length)).toString('latin1');
  if (!prefix.startsWith(head)) return { status: 'error', reason: 'bad v1 signature' };
  const end = buf.indexOf('\r\n');
  if (end < 0) return buf.length >= V1_MAX ? { status: 'error', reason: 'v1 header too long' } : { status: 'incomplete' };
  if (end + 2 > V1_MAX) return { status: 'error', reason: 'v1 header too long' };
  const parts = buf.subarray(0, end).toString('latin1').split(' ');
  if (parts[1] === 'UNKNOWN') return { status: 'ok', consumed: end + 2, address: null, port: null };
  if (parts.length !== 6 || (parts[1] !== 'TCP4' && parts[1] !== 'TCP6')) return { status: 'error', reason: 'bad v1 header' };
  const address = parts[2]!;
  const port = Number(parts[4]);
  const v4 = /^\d{1,3}(\.\d{1,3}){3}$/.test(address);
  if ((parts[1] === 'TCP4' && !v4) || (parts[1] === 'TCP6' && !/^[0-9a-fA-F:.]+$/.test(address)) || !Number.isInteger(port) || port < 0 || port > 65535) {
    return { status: 'error', reason: 'bad v1 address' };
  }
  return { status: 'ok', consumed: end + 2, address, port };
}

function parseV2(buf: Buffer): ProxyParse {
  const n = Math.min(buf.length, V2_SIG.length);
  if (!buf.subarray(0, n).equals(V2_SIG.subarray(0, n))) return { status: 'error', reason: 'bad v2 signature' };
  if (buf.length < 16) return { status: 'incomplete' };
  const verCmd = buf[12]!;
  if (verCmd >> 4 !== 2) return { status: 'error', reason: 'unsupported v2 version' };
  const len = buf.readUInt16BE(14);
  if (buf.length < 16 + len) return { status: 'incomplete' };
  const consumed = 16 + len;
  const cmd = verCmd & 0x0f;
  if (cmd === 0) return { status: 'ok', consumed, address: null, port: null }; // LOCAL
  if (cmd !== 1) return { status: 'error', reason: 'unknown v2 command' };
  const family = buf[13]! >> 4;
  const body = buf.subarray(16, consumed);
  if (family === 1) {
    if (body.length < 12) return { status: 'error', reason: 'short v2 IPv4 block' };
    return { status: 'ok', consumed, address: `${body[0]}.${body[1]}.${body[2]}.${body[3]}`, port: body.readUInt16BE(8) };
  }
  if (family === 2) {
    if (body.length < 36) return { status: 'error', reason: 'short v2 IPv6 block' };
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(body.readUInt16BE(i).toString(16));
    return { status: 'ok', consumed, address: groups.join(':'), port: body.readUInt16BE(32) };
  }
  return { status: 'ok', consumed, address: null, port: null }; // AF_UNSPEC / AF_UNIX: keep the socket's
}

/** A v1 header (for tests and tools). */
export function proxyV1(address: string, port: number, dest = '127.0.0.1', destPort = 1883): Buffer {
  const fam = address.includes(':') ? 'TCP6' : 'TCP4';
  return Buffer.from(`PROXY ${fam} ${address} ${dest} ${port} ${destPort}\r\n`, 'latin1');
}

/** A v2 PROXY header for an IPv4 source (for tests and tools). */
export function proxyV2(address: string, port: number, dest = '127.0.0.1', destPort = 1883): Buffer {
  const body = Buffer.alloc(12);
  address.split('.').forEach((o, i) => (body[i] = Number(o)));
  dest.split('.').forEach((o, i) => (body[4 + i] = Number(o)));
  body.writeUInt16BE(port, 8);
  body.writeUInt16BE(destPort, 10);
  const head = Buffer.alloc(4);
  head[0] = 0x21;
  head[1] = 0x11;
  head.writeUInt16BE(body.length, 2);
  return Buffer.concat([V2_SIG, head, body]);
}
