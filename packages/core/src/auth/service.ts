// Authentication and the authorization hook, on the main thread. Session workers ask here (a request
// beside the hub's); password checks (scrypt) run on a piscina pool, so neither the workers' nor the
// main thread's event loop ever hashes. The queue of checks is bounded: beyond it CONNECT gets "busy".
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Piscina } from 'piscina';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Logger } from '../logger.ts';
import type { AuthConfig } from './config.ts';
import { randomBytes } from 'node:crypto';
import { DEFAULT_PARAMS, hashPassword, parsePasswordFile, type ScryptHash } from './password-file.ts';
import { FailureLimiter } from './rate-limit.ts';
import type { VerifyTask } from './scrypt-task.ts';
import type { AuthenticateAnswer, AuthenticateRequest, AuthorizeRequest, AuthResult, SecurityRequest } from './types.ts';

/** What a hook module's authenticate() may answer (see README, "Authentication hook"). */
export type HookAuthenticateAnswer =
  | boolean
  | undefined
  | null
  | 'not_authorized'
  | { result: 'ok' | 'bad_credentials' | 'not_authorized'; username?: string | null };

export interface AuthHook {
  authenticate?(req: { clientId: string; username: string | null; password: string | null; passwordBytes: Buffer | null; address: string }): HookAuthenticateAnswer | Promise<HookAuthenticateAnswer>;
  authorize?(req: { clientId: string; username: string | null; action: 'publish' | 'subscribe'; topic: string }): boolean | undefined | null | Promise<boolean | undefined | null>;
}

const TASK_FILE = new URL('./scrypt-task.ts', import.meta.url).href;

class HookTimeout extends Error {}

function withTimeout<T>(p: Promise<T> | T, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new HookTimeout(`hook did not answer within ${ms} ms`)), ms);
    Promise.resolve(p).then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

export class SecurityService {
  private readonly cfg: AuthConfig;
  private readonly log: Logger;
  private users = new Map<string, ScryptHash>();
  /** Checked when the user is unknown, so a wrong name costs what a wrong password costs: same
   *  parameters as most of the file's entries. */
  private dummy: ScryptHash | null = null;
  private pool: Piscina | null = null;
  private pending = 0;
  private readonly limiter: FailureLimiter;
  private hook: AuthHook | null = null;
  private watcher: FSWatcher | null = null;
  private reloadTimer: NodeJS.Timeout | null = null;
  private readonly onHup = (): void => void this.reload('SIGHUP');
  private readonly checks: Counter<'result'>;
  private readonly rateLimited: Counter;
  private readonly reloads: Counter<'result'>;
  /** Extra SIGHUP work (TLS certificates): the transports register here. */
  readonly hupListeners: Array<() => void> = [];

  constructor(cfg: AuthConfig, log: Logger, registry: Registry) {
    this.cfg = cfg;
    this.log = log;
    this.limiter = new FailureLimiter(cfg.failuresPerMinutePerAddress);
    const registers = [registry];
    this.checks = new Counter({ name: 'starling_auth_checks_total', help: 'Credential checks on the main thread, by result.', labelNames: ['result'], registers });
    for (const result of ['ok', 'bad_credentials', 'not_authorized', 'busy', 'unavailable']) this.checks.inc({ result }, 0);
    this.rateLimited = new Counter({
      name: 'starling_auth_rate_limited_total',
      help: 'CONNECTs refused without a password check: too many recent failures from their address.',
      registers,
    });
    this.reloads = new Counter({ name: 'starling_auth_reloads_total', help: 'Password file reloads, by result.', labelNames: ['result'], registers });
    this.reloads.inc({ result: 'ok' }, 0);
    this.reloads.inc({ result: 'error' }, 0);
    const self = this;
    new Gauge({
      name: 'starling_auth_pending_checks',
      help: 'Password checks queued or running.',
      registers,
      collect() {
        this.set(self.pending);
      },
    });
  }

  /** Whether workers must ask before accepting a CONNECT (else they decide alone: anonymous rules only). */
  static needed(cfg: AuthConfig): boolean {
    return cfg.passwordFile !== undefined || cfg.hookModule !== undefined;
  }

  /** Loads the password file and the hook; fails start-up when either is configured and unusable. */
  async start(): Promise<void> {
    if (this.cfg.passwordFile) {
      this.users = await this.readUsers();
      this.log.info({ file: this.cfg.passwordFile, users: this.users.size }, 'password file loaded');
      this.pool = new Piscina({ filename: TASK_FILE, minThreads: 1, maxThreads: this.cfg.hashThreads, idleTimeout: 60_000 });
      if (this.cfg.watchPasswordFile) this.watchFile(this.cfg.passwordFile);
    }
    if (this.cfg.hookModule) {
      const url = pathToFileURL(path.resolve(this.cfg.hookModule)).href;
      this.hook = (await import(url)) as AuthHook;
      if (typeof this.hook.authenticate !== 'function' && typeof this.hook.authorize !== 'function') {
        throw new Error(`auth.hookModule ${this.cfg.hookModule} exports neither authenticate nor authorize`);
      }
      this.log.info({ module: this.cfg.hookModule, authenticate: typeof this.hook.authenticate === 'function', authorize: typeof this.hook.authorize === 'function' }, 'auth hook loaded');
    }
    process.on('SIGHUP', this.onHup);
  }

  get hasAuthorizeHook(): boolean {
    return typeof this.hook?.authorize === 'function';
  }

  private async readUsers(): Promise<Map<string, ScryptHash>> {
    const file = this.cfg.passwordFile!;
    const users = parsePasswordFile(await readFile(file, 'utf8'), file);
    const counts = new Map<string, number>();
    let params: { N: number; r: number; p: number } = DEFAULT_PARAMS;
    let best = 0;
    for (const h of users.values()) {
      const key = `${h.N}/${h.r}/${h.p}`;
      const n = (counts.get(key) ?? 0) + 1;
      counts.set(key, n);
      if (n > best) {
        best = n;
        params = { N: h.N, r: h.r, p: h.p };
      }
    }
    const d = this.dummy;
    if (!d || d.N !== params.N || d.r !== params.r || d.p !== params.p) this.dummy = await hashPassword(randomBytes(16), params);
    return users;
  }

  /** Re-reads the password file; a broken file keeps the users loaded before (logged, counted). */
  async reload(cause: string): Promise<void> {
    if (cause === 'SIGHUP') for (const l of this.hupListeners) l();
    if (!this.cfg.passwordFile) return;
    try {
      this.users = await this.readUsers();
      this.reloads.inc({ result: 'ok' });
      this.log.info({ cause, users: this.users.size }, 'password file reloaded');
    } catch (err) {
      this.reloads.inc({ result: 'error' });
      this.log.error({ cause, err: (err as Error).message }, 'password file reload failed; keeping the previous users');
    }
  }

  /** Watches the directory (an editor or starling-passwd replaces the file by rename). */
  private watchFile(file: string): void {
    const dir = path.dirname(path.resolve(file));
    const base = path.basename(file);
    try {
      this.watcher = watch(dir, { persistent: false }, (_event, name) => {
        if (name !== null && name !== base) return;
        if (this.reloadTimer) clearTimeout(this.reloadTimer);
        this.reloadTimer = setTimeout(() => {
          this.reloadTimer = null;
          void this.reload('file changed');
        }, 100);
      });
      this.watcher.on('error', (err) => this.log.warn({ err: err.message }, 'password file watch failed'));
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'cannot watch the password file; reload with SIGHUP');
    }
  }

  /** Handles a worker's request if it is one of ours; returns false for the hub's. */
  handles(req: { op: string }): req is SecurityRequest {
    return req.op === 'authenticate' || req.op === 'authorize';
  }

  answer(req: SecurityRequest): Promise<unknown> {
    return req.op === 'authenticate' ? this.authenticate(req) : this.authorize(req);
  }

  async authenticate(req: AuthenticateRequest): Promise<AuthenticateAnswer> {
    const answer = await this.decide(req);
    this.checks.inc({ result: answer.result });
    if (answer.result === 'ok' && this.hasAuthorizeHook) answer.hookAuthorizes = true;
    return answer;
  }

  private async decide(req: AuthenticateRequest): Promise<AuthenticateAnswer> {
    const addr = req.address;
    if (this.limiter.blocked(addr)) {
      this.rateLimited.inc();
      return { result: 'bad_credentials', username: req.username, rateLimited: true };
    }
    let username = req.certificateUsername ?? req.username;
    if (this.hook?.authenticate) {
      let said: HookAuthenticateAnswer;
      try {
        const pw = req.password ? Buffer.from(req.password) : null;
        said = await withTimeout(
          this.hook.authenticate({ clientId: req.clientId, username, password: pw ? pw.toString('utf8') : null, passwordBytes: pw, address: addr }),
          this.cfg.hookTimeoutMs,
        );
      } catch (err) {
        this.log.warn({ err: (err as Error).message, clientId: req.clientId }, 'auth hook failed');
        return { result: 'unavailable', username };
      }
      if (said !== undefined && said !== null) {
        let result: AuthResult;
        if (said === true) result = 'ok';
        else if (said === false) result = 'bad_credentials';
        else if (said === 'not_authorized') result = 'not_authorized';
        else {
          result = said.result;
          if (said.username !== undefined) username = said.username;
        }
        this.settle(addr, result);
        return { result, username };
      }
    }
    if (req.certificateUsername) return { result: 'ok', username: req.certificateUsername };
    if (username === null) return { result: this.cfg.allowAnonymous ? 'ok' : 'not_authorized', username: null };
    if (!this.cfg.passwordFile || !this.pool) {
      // Nothing to check a name against: it is as good as anonymous.
      const result: AuthResult = this.cfg.allowAnonymous ? 'ok' : 'bad_credentials';
      this.settle(addr, result);
      return { result, username };
    }
    if (this.pending >= this.cfg.maxPendingHashes) return { result: 'busy', username };
    const known = this.users.get(username);
    const stored = known ?? this.dummy!;
    const task: VerifyTask = {
      password: req.password ?? new Uint8Array(0),
      N: stored.N,
      r: stored.r,
      p: stored.p,
      salt: stored.salt,
      hash: stored.hash,
    };
    this.pending++;
    let ok: boolean;
    try {
      ok = (await this.pool.run(task)) as boolean;
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'password check failed');
      return { result: 'unavailable', username };
    } finally {
      this.pending--;
    }
    const result: AuthResult = ok && known !== undefined ? 'ok' : 'bad_credentials';
    this.settle(addr, result);
    return { result, username };
  }

  private settle(addr: string, result: AuthResult): void {
    if (result === 'ok') this.limiter.succeeded(addr);
    else if (result === 'bad_credentials') this.limiter.failed(addr);
  }

  /** The hook's decision (true/false), or null: no hook, or it has no opinion (the ACL decides). */
  async authorize(req: AuthorizeRequest): Promise<boolean | null> {
    if (!this.hook?.authorize) return null;
    try {
      const said = await withTimeout(
        this.hook.authorize({ clientId: req.clientId, username: req.username, action: req.action, topic: req.topic }),
        this.cfg.hookTimeoutMs,
      );
      return said === true ? true : said === false ? false : null;
    } catch (err) {
      this.log.warn({ err: (err as Error).message, clientId: req.clientId }, 'authorize hook failed; refusing');
      return false;
    }
  }

  async stop(): Promise<void> {
    process.off('SIGHUP', this.onHup);
    this.watcher?.close();
    if (this.reloadTimer) clearTimeout(this.reloadTimer);
    await this.pool?.destroy().catch(() => undefined);
  }
}

/** Routes a worker's security request to the service and posts the answer back; false: not ours. */
export function interceptSecurityRequest(
  service: SecurityService,
  workerId: number,
  msg: { t: string; id?: number; req?: { op: string } },
  reply: (workerId: number, res: { t: 'res'; id: number; value?: unknown; error?: string }) => void,
): boolean {
  if (msg.t !== 'req' || !msg.req || !service.handles(msg.req)) return false;
  const id = msg.id ?? 0;
  service.answer(msg.req).then(
    (value) => id !== 0 && reply(workerId, { t: 'res', id, value }),
    (err: Error) => id !== 0 && reply(workerId, { t: 'res', id, error: err.message }),
  );
  return true;
}
