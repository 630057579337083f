// The worker's side of authentication and authorization: asks the main thread's security service
// before a CONNECT claims its session (only when a password file or hook is configured; otherwise it
// decides alone), gives the connection its identity and ACL, and, when a hook authorizes, holds
// PUBLISH/SUBSCRIBE packets until the hook's decision for their topic is known (in arrival order).
import type mqtt from 'mqtt-packet';
import { aclFor, aclIsPerClient, ClientAcl } from '@starling/core/auth/acl.ts';
import type { AuthenticateAnswer, AuthorizeRequest } from '@starling/core/auth/types.ts';
import type { Connection } from './connection.ts';
import type { WorkerContext } from './context.ts';
import { encode } from './encode.ts';
import { dispatch } from './handlers/index.ts';

/** Until authentication settles a connection may do nothing. */
export { DENY_ALL as LOCKED_ACL } from '@starling/core/auth/acl.ts';

/** Thrown (after the CONNACK refusal was sent) so the CONNECT handler goes no further. */
export class ConnectRefused extends Error {}

const sharedAcl = new WeakMap<WorkerContext, ClientAcl>();

/** The ACL of one identity: one shared instance when no rule depends on who the client is. */
export function aclOf(ctx: WorkerContext, username: string | null, clientId: string): ClientAcl {
  const rules = ctx.config.acl;
  const policy = ctx.config.aclDefault;
  if (!aclIsPerClient(rules)) {
    let acl = sharedAcl.get(ctx);
    if (!acl) {
      acl = aclFor(rules, policy, { username: null, clientId: '' });
      sharedAcl.set(ctx, acl);
    }
    return acl;
  }
  return aclFor(rules, policy, { username, clientId });
}

function remoteAddress(conn: Connection): string {
  return (conn as { remoteAddress?: string }).remoteAddress ?? conn.socket.remoteAddress ?? '';
}

function refuse(conn: Connection, answer: AuthenticateAnswer['result']): void {
  const v5 = conn.version === 5;
  let v5Code: number;
  let v3Code: number;
  let result: 'bad_credentials' | 'not_authorized' | 'server_busy' | 'server_unavailable';
  switch (answer) {
    case 'not_authorized':
      [v5Code, v3Code, result] = [0x87, 5, 'not_authorized'];
      break;
    case 'busy':
      [v5Code, v3Code, result] = [0x89, 3, 'server_busy'];
      break;
    case 'unavailable':
      [v5Code, v3Code, result] = [0x88, 3, 'server_unavailable'];
      break;
    default:
      [v5Code, v3Code, result] = [0x86, 4, 'bad_credentials'];
  }
  conn.write(encode(v5 ? { cmd: 'connack', reasonCode: v5Code, sessionPresent: false } : { cmd: 'connack', returnCode: v3Code, sessionPresent: false }, conn.version));
  conn.ctx.metrics.connectAttempts.inc({ result });
  // Never claimed: the connection must not release (and so delete) the session of that client id.
  conn.clientId = null;
  conn.will = null;
  conn.close(result === 'server_unavailable' ? 'server_busy' : result);
}

/**
 * Authenticates a CONNECT (state 'connecting'). Resolves once accepted, with conn.username and conn.acl
 * set; otherwise sends the refusing CONNACK, closes, and rejects with ConnectRefused.
 */
export async function authenticateConnect(conn: Connection, packet: mqtt.IConnectPacket, clientId: string): Promise<void> {
  const ctx = conn.ctx;
  const auth = ctx.config.auth;
  const username = packet.username ?? null;
  const c = conn as Connection & { username: string | null; acl: ClientAcl; certificateUsername?: string | null };
  let answer: AuthenticateAnswer;
  const remote = auth.passwordFile !== undefined || auth.hookModule !== undefined || (c.certificateUsername ?? null) !== null;
  if (!remote || (username === null && auth.hookModule === undefined && !c.certificateUsername)) {
    // Nothing to check on the main thread: anonymous rules alone (no round trip).
    answer = { result: username === null && !auth.allowAnonymous ? 'not_authorized' : 'ok', username };
    if (username !== null && !auth.allowAnonymous && auth.passwordFile === undefined && auth.hookModule === undefined) answer = { result: 'bad_credentials', username };
  } else {
    // Not read meanwhile: a client cannot pile packets up behind a slow check.
    conn.holdReading();
    try {
      answer = await ctx.hub.request<AuthenticateAnswer>({
        op: 'authenticate',
        clientId,
        username,
        password: packet.password ?? null,
        address: remoteAddress(conn),
        certificateUsername: c.certificateUsername ?? null,
      });
    } catch (err) {
      conn.log.warn({ err: (err as Error).message }, 'authentication request failed');
      answer = { result: 'unavailable', username };
    } finally {
      conn.releaseReading();
    }
  }
  if (conn.state !== 'connecting') throw new ConnectRefused('connection ended during authentication');
  if (answer.result !== 'ok') {
    conn.log.info({ result: answer.result, username, rateLimited: answer.rateLimited === true }, 'connect refused by authentication');
    refuse(conn, answer.result);
    throw new ConnectRefused(answer.result);
  }
  c.username = answer.username;
  c.acl = aclOf(ctx, answer.username, clientId);
  const hookAuthorizes = answer.hookAuthorizes === true;
  if (packet.will && !(await mayPublishWill(conn, packet.will.topic, hookAuthorizes))) {
    // The will is published on the client's behalf later: it needs the client's publish permission now.
    conn.log.info({ topic: packet.will.topic }, 'connect refused: will topic not authorized');
    refuse(conn, 'not_authorized');
    throw new ConnectRefused('will not authorized');
  }
  if (hookAuthorizes) installAuthorizeGate(conn);
}

async function mayPublishWill(conn: Connection, topic: string, hookAuthorizes: boolean): Promise<boolean> {
  if (topic.startsWith('$SYS/')) return false;
  if (hookAuthorizes) {
    const said = await conn.ctx.hub
      .request<boolean | null>({ op: 'authorize', clientId: conn.clientId ?? '', username: conn.username, action: 'publish', topic } satisfies AuthorizeRequest)
      .catch(() => false);
    if (conn.state !== 'connecting') throw new ConnectRefused('connection ended during authorization');
    if (said !== null) return said;
  }
  return conn.acl.empty || conn.acl.canPublish(topic);
}

// --- Hook authorization ----------------------------------------------------------------------------

const DECISIONS_MAX = 1000;

/** Per connection: the hook's decisions by `p:topic` / `s:filter` (null: no opinion, the ACL decides). */
const decisions = new WeakMap<Connection, Map<string, boolean | null>>();

/** The hook's cached decision for this connection, if any (handlers consult it before the ACL). */
export function hookDecision(conn: Connection, action: 'publish' | 'subscribe', topic: string): boolean | null {
  const d = decisions.get(conn);
  if (!d) return null;
  return d.get(`${action === 'publish' ? 'p' : 's'}:${topic}`) ?? null;
}

/** Whether the ACL (and hook) lets this connection publish to the topic. */
export function mayPublish(conn: Connection, topic: string): boolean {
  // The publish path: without a hook (no gate) and without rules this is two field reads.
  if (conn.gate !== null) {
    const said = hookDecision(conn, 'publish', topic);
    if (said !== null) return said;
  }
  const acl = conn.acl;
  return acl.empty || acl.canPublish(topic);
}

export function maySubscribe(conn: Connection, filter: string): boolean {
  if (conn.gate !== null) {
    const said = hookDecision(conn, 'subscribe', filter);
    if (said !== null) return said;
  }
  const acl = conn.acl;
  return acl.empty || acl.canSubscribe(filter);
}

function keysOf(conn: Connection, packet: mqtt.Packet): Array<{ action: 'publish' | 'subscribe'; topic: string }> {
  if (packet.cmd === 'publish') {
    let topic = packet.topic;
    const alias = packet.properties?.topicAlias;
    if (topic === '' && alias !== undefined) topic = conn.inboundAliases.get(alias) ?? '';
    return topic === '' ? [] : [{ action: 'publish', topic }];
  }
  if (packet.cmd === 'subscribe') {
    return (packet.subscriptions ?? []).map((s) => {
      const m = /^\$share\/[^/]+\/(.*)$/s.exec(s.topic);
      return { action: 'subscribe' as const, topic: m ? m[1]! : s.topic };
    });
  }
  return [];
}

/**
 * Makes the connection pass PUBLISH/SUBSCRIBE through the hook's authorize() first: packets whose
 * decision is not cached wait (reading paused), and all packets keep their order.
 */
function installAuthorizeGate(conn: Connection): void {
  const cache = new Map<string, boolean | null>();
  decisions.set(conn, cache);
  const queue: mqtt.Packet[] = [];
  let busy = false;
  const c = conn as Connection & { gate: ((p: mqtt.Packet) => boolean) | null; username: string | null };

  const missing = (p: mqtt.Packet) => keysOf(conn, p).filter((k) => !cache.has(`${k.action === 'publish' ? 'p' : 's'}:${k.topic}`));

  const pump = async (): Promise<void> => {
    busy = true;
    conn.holdReading();
    try {
      while (queue.length > 0 && conn.state === 'connected') {
        const p = queue[0]!;
        const need = missing(p);
        if (need.length > 0) {
          const answers = await Promise.all(
            need.map((k) =>
              conn.ctx.hub
                .request<boolean | null>({ op: 'authorize', clientId: conn.clientId ?? '', username: c.username, action: k.action, topic: k.topic } satisfies AuthorizeRequest)
                .catch(() => false),
            ),
          );
          if (cache.size + need.length > DECISIONS_MAX) cache.clear();
          need.forEach((k, i) => cache.set(`${k.action === 'publish' ? 'p' : 's'}:${k.topic}`, answers[i]!));
        }
        queue.shift();
        if (conn.state !== 'connected') break;
        try {
          dispatch(conn, p);
        } catch (err) {
          conn.log.error({ err }, 'handler failed');
          conn.close('protocol_error');
        }
      }
    } finally {
      busy = false;
      queue.length = 0;
      conn.releaseReading();
    }
  };

  c.gate = (packet) => {
    if (packet.cmd !== 'publish' && packet.cmd !== 'subscribe' && !busy) return false;
    if (!busy && missing(packet).length === 0) return false;
    queue.push(packet);
    if (!busy) void pump();
    return true;
  };
}
