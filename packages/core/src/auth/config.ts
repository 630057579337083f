// Configuration of authentication and of the limits that protect the broker from its clients.
import { z } from 'zod';

export const authSchema = z
  .object({
    /** File of `username:scrypt$N$r$p$salt$hash` lines (`starling-passwd add FILE USER`). Reloaded on SIGHUP and when it changes. */
    passwordFile: z.string().min(1).optional(),
    /** Whether a CONNECT without a username is accepted. Refused: CONNACK 0x87 (v5) / 0x05 (v3). */
    allowAnonymous: z.boolean().default(true),
    /** Password checks queued or running at once; beyond it CONNECT gets "server busy" (v5 0x89 / v3 0x03). */
    maxPendingHashes: z.number().int().min(1).default(1000),
    /** Failed logins per address per minute before further attempts are refused without checking (0: no limit). */
    failuresPerMinutePerAddress: z.number().int().min(0).default(10),
    /** Threads checking passwords (scrypt), off every event loop. */
    hashThreads: z.number().int().min(1).max(64).default(1),
    /** ES module exporting authenticate(...) and optionally authorize(...); loaded on the main thread (README). */
    hookModule: z.string().min(1).optional(),
    /** Longest wait for a hook's answer; after it the CONNECT gets "server unavailable" and an authorize is refused. */
    hookTimeoutMs: z.number().int().min(1).default(5000),
    /** Reload the password file when it changes on disk (fs.watch), besides SIGHUP. */
    watchPasswordFile: z.boolean().default(true),
  })
  .prefault({});

export type AuthConfig = z.infer<typeof authSchema>;

/** Fields of `limits` (spread into the limits object of config.ts). 0 means no limit. */
export const securityLimitsShape = {
  /** Open MQTT connections on this node; further sockets are refused at accept (counted). */
  maxConnections: z.number().int().min(0).default(0),
  /** New connections per second from one source address (burst: one second's worth); 0: no limit. */
  connectionRatePerAddress: z.number().min(0).default(0),
  /** Longest topic name or filter, in UTF-8 bytes. */
  maxTopicLength: z.number().int().min(1).max(65535).default(65535),
  /** Most levels (`/`-separated) in a topic name or filter. */
  maxTopicLevels: z.number().int().min(0).default(0),
  /** Subscriptions one session may hold; the excess filter gets SUBACK 0x97 (v5) / 0x80 (v3). */
  maxSubscriptionsPerClient: z.number().int().min(0).default(0),
  /** PUBLISH packets per second per client (burst: one second's worth); exceeded: DISCONNECT 0x96 (v5) / close (v3). */
  publishRatePerSecond: z.number().min(0).default(0),
  /** PUBLISH payload bytes per second per client (burst: one second's worth). */
  publishBytesPerSecond: z.number().min(0).default(0),
} as const;

export const aclSelectorShape = {
  /** The rule applies to this user only. */
  username: z.string().min(1).optional(),
  /** The rule applies to this client id only. */
  clientId: z.string().min(1).optional(),
  /** The rule applies to anonymous connections only. */
  anonymous: z.literal(true).optional(),
} as const;
