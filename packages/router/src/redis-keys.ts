// Every key shares one hash tag so that multi-key Lua scripts run on Redis Cluster (all keys land in
// one slot). Scripts that must reach a key they only learn while running (the previous owner's node
// index) build it from `tag`, which stays within the same slot.

export interface RedisKeys {
  /** `{name}:`: the prefix of every key; scripts append to it. */
  readonly tag: string;
  readonly members: string;
  readonly retained: string;
  /** Client ids with a stored session, for offlineSessions(). */
  readonly sessions: string;
  heartbeat(nodeId: string): string;
  /** This node's routes: members are `group \0 filter`. */
  routes(nodeId: string): string;
  /** Client ids whose session a connection on nodeId owns, so a restarted or dead node's owners can be released. */
  nodeSessions(nodeId: string): string;
  nodeWills(nodeId: string): string;
  session(clientId: string): string;
  queue(clientId: string): string;
  will(clientId: string): string;
  /** Pub/sub channels are not keys (no slot), so they keep the plain prefix. */
  readonly routeChannel: string;
  nodeChannel(nodeId: string): string;
}

export function redisKeys(prefix: string): RedisKeys {
  const name = prefix.endsWith(':') ? prefix.slice(0, -1) : prefix;
  if (name.length === 0 || /[{}]/.test(name)) throw new Error(`invalid keyPrefix ${JSON.stringify(prefix)}`);
  const tag = `{${name}}:`;
  return {
    tag,
    members: `${tag}members`,
    retained: `${tag}retained`,
    sessions: `${tag}sessions`,
    heartbeat: (id) => `${tag}hb:${id}`,
    routes: (id) => `${tag}routes:${id}`,
    nodeSessions: (id) => `${tag}node-sessions:${id}`,
    nodeWills: (id) => `${tag}node-wills:${id}`,
    session: (id) => `${tag}sess:${id}`,
    queue: (id) => `${tag}queue:${id}`,
    will: (id) => `${tag}will:${id}`,
    routeChannel: `${name}:routes`,
    nodeChannel: (id) => `${name}:node:${id}`,
  };
}

/** A route as stored in a node's route set. Filters cannot contain NUL [MQTT-4.7.3-2]; groups are filtered too. */
export function routeMember(filter: string, group: string): string {
  return `${group}\u0000${filter}`;
}

export function parseRouteMember(member: string): [filter: string, group: string] {
  const i = member.indexOf('\u0000');
  return [member.slice(i + 1), member.slice(0, i)];
}
