// deploy/docker/Dockerfile without a Docker engine: parse it, check what would break a build or a
// rollout (COPY sources, .dockerignore, base image, user, ports, health check), then play the image's
// build and start in a temp dir: the same COPYs, the same `pnpm install`, the same ENTRYPOINT and
// HEALTHCHECK, run by the current Node 26 as the image's user.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { parseConfig } from '../packages/core/src/config.ts';
import { REPO_ROOT } from './helpers/broker.ts';

const DOCKERFILE = path.join(REPO_ROOT, 'deploy/docker/Dockerfile');
const DEFAULTS = parseConfig({});

interface Instruction {
  cmd: string;
  /** Everything after the keyword, continuations joined. */
  args: string;
  line: number;
}

interface Stage {
  image: string;
  name: string | undefined;
  instructions: Instruction[];
}

/** Dockerfile → stages of instructions (comments, parser directives and `\` continuations handled). */
function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const start = i;
    let logical = lines[i]!;
    if (/^\s*(#|$)/.test(logical)) continue;
    while (/\\\s*$/.test(logical) && i + 1 < lines.length) {
      i++;
      if (/^\s*#/.test(lines[i]!)) continue; // comment lines inside a continuation are dropped
      logical = logical.replace(/\\\s*$/, ' ') + lines[i]!.trim();
    }
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(logical);
    if (!m) throw new Error(`Dockerfile line ${start + 1}: cannot parse "${logical}"`);
    const ins: Instruction = { cmd: m[1]!.toUpperCase(), args: m[2]!.trim(), line: start + 1 };
    if (ins.cmd === 'FROM') {
      const [image, as, name] = ins.args.replace(/--platform=\S+\s+/, '').split(/\s+/);
      stages.push({ image: image!, name: as?.toUpperCase() === 'AS' ? name : undefined, instructions: [] });
    } else {
      if (stages.length === 0) throw new Error(`Dockerfile line ${start + 1}: ${ins.cmd} before FROM`);
      stages.at(-1)!.instructions.push(ins);
    }
  }
  return stages;
}

interface Copy {
  from: string | undefined;
  sources: string[];
  dest: string;
  line: number;
}

function parseCopy(ins: Instruction): Copy {
  let rest = ins.args;
  const flags: Record<string, string> = {};
  for (let m = /^--(\w+)=(\S+)\s+/.exec(rest); m; m = /^--(\w+)=(\S+)\s+/.exec(rest)) {
    flags[m[1]!] = m[2]!;
    rest = rest.slice(m[0].length);
  }
  const parts = rest.startsWith('[') ? (JSON.parse(rest) as string[]) : rest.split(/\s+/);
  return { from: flags.from, sources: parts.slice(0, -1), dest: parts.at(-1)!, line: ins.line };
}

/** The JSON array of an exec-form instruction (ENTRYPOINT, HEALTHCHECK … CMD). */
function execForm(args: string): string[] {
  const start = args.indexOf('[');
  return JSON.parse(args.slice(start)) as string[];
}

/** ENV a=b c="d e" (and the legacy `ENV a b`). */
function parseEnv(args: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!/^\S+=/.test(args)) {
    const [k, ...v] = args.split(/\s+/);
    out[k!] = v.join(' ');
    return out;
  }
  for (const m of args.matchAll(/(\w+)=("([^"]*)"|\S*)/g)) out[m[1]!] = m[3] ?? m[2]!;
  return out;
}

/** .dockerignore as BuildKit reads it: the last matching pattern wins, a pattern matching a parent
 *  directory matches the files under it, `**` crosses directories and `*` does not. */
function dockerignore(text: string): (file: string) => boolean {
  const rules = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const pattern = path.posix.normalize((negate ? l.slice(1) : l).replace(/^\/+/, '')).replace(/\/$/, '');
      let re = '';
      for (let i = 0; i < pattern.length; i++) {
        const c = pattern[i]!;
        if (c === '*' && pattern[i + 1] === '*') {
          re += pattern[i + 2] === '/' ? '(?:.*/)?' : '.*';
          i += pattern[i + 2] === '/' ? 2 : 1;
        } else if (c === '*') re += '[^/]*';
        else if (c === '?') re += '[^/]';
        else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
      }
      return { negate, re: new RegExp(`^${re}$`) };
    });
  return (file) => {
    const parts = file.split('/');
    let excluded = false;
    for (const rule of rules) {
      let matched = false;
      for (let n = 1; n <= parts.length && !matched; n++) matched = rule.re.test(parts.slice(0, n).join('/'));
      if (matched) excluded = !rule.negate;
    }
    return !excluded;
  };
}

function filesUnder(abs: string, rel: string): string[] {
  if (!fs.statSync(abs).isDirectory()) return [rel];
  return fs.readdirSync(abs).flatMap((name) => filesUnder(path.join(abs, name), `${rel}/${name}`));
}

const text = fs.readFileSync(DOCKERFILE, 'utf8');
const stages = parseDockerfile(text);
const final = stages.at(-1)!;
const finalOf = (cmd: string) => final.instructions.filter((i) => i.cmd === cmd);
const copies = stages.flatMap((s) => s.instructions.filter((i) => i.cmd === 'COPY').map(parseCopy));

describe('deploy/docker/Dockerfile', () => {
  it('every stage is built on Node 26 (node:26-slim): the sources are TypeScript run by Node 26', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const stage of stages) expect(stage.image).toMatch(/^node:26(\.\d+)*-slim(@sha256:[0-9a-f]{64})?$/);
  });

  it('every COPY source from the build context exists and gets through .dockerignore', () => {
    const included = dockerignore(fs.readFileSync(path.join(REPO_ROOT, '.dockerignore'), 'utf8'));
    const contextCopies = copies.filter((c) => !c.from);
    expect(contextCopies.length).toBeGreaterThan(0);
    for (const c of contextCopies) {
      for (const src of c.sources) {
        const abs = path.join(REPO_ROOT, src);
        expect(fs.existsSync(abs), `COPY ${src} (line ${c.line}) does not exist`).toBe(true);
        const files = filesUnder(abs, src.replace(/\/$/, ''));
        expect(files.length, `COPY ${src} is empty`).toBeGreaterThan(0);
        for (const f of files) expect(included(f), `${f} (COPY line ${c.line}) is excluded by .dockerignore`).toBe(true);
      }
    }
    // and the context stays small: tests, node_modules and docs do not go in
    for (const f of ['node_modules/.modules.yaml', 'packages/core/test/config.test.ts', 'test/smoke.test.ts', 'README.md', 'docs/architecture.md', 'packages/core/node_modules/zod/package.json']) {
      expect(included(f), `${f} should be left out of the build context`).toBe(false);
    }
  });

  it('COPY --from names an earlier stage', () => {
    const names = stages.map((s) => s.name).filter(Boolean);
    for (const c of copies.filter((c) => c.from)) expect(names, `line ${c.line}`).toContain(c.from);
  });

  it('the image carries every workspace package the broker loads at run time, manifest and sources', () => {
    const dests = copies.map((c) => c.dest.replace(/\/$/, ''));
    // The broker entry is in core; core starts worker threads from packages/worker; both use router.
    const needed = new Set(['core', 'worker']);
    for (const name of [...needed]) {
      const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'packages', name, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
      for (const dep of Object.keys(pkg.dependencies ?? {})) if (dep.startsWith('@starling/')) needed.add(dep.slice('@starling/'.length));
    }
    for (const name of needed) {
      expect(dests, `packages/${name}/package.json`).toContain(`packages/${name}/package.json`);
      expect(dests, `packages/${name}/src`).toContain(`packages/${name}/src`);
    }
  });

  it('installs production dependencies only, from the lockfile, with the pnpm the repository pins', () => {
    const runs = stages.flatMap((s) => s.instructions.filter((i) => i.cmd === 'RUN').map((i) => i.args));
    const install = runs.find((r) => /^pnpm install\b/.test(r));
    expect(install).toBeDefined();
    expect(install).toContain('--prod');
    expect(install).toContain('--frozen-lockfile');
    const root = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { packageManager: string };
    expect(runs.some((r) => r.includes(`pnpm@${root.packageManager.replace(/^pnpm@/, '')}`))).toBe(true);
    // The final stage has no package manager run of its own: it copies the installed tree.
    expect(final.instructions.filter((i) => i.cmd === 'RUN')).toEqual([]);
  });

  it('runs as a non-root numeric user (so Kubernetes runAsNonRoot can verify it)', () => {
    const users = finalOf('USER');
    expect(users.length).toBeGreaterThan(0);
    const user = users.at(-1)!.args.split(':')[0]!;
    expect(user).toMatch(/^\d+$/);
    expect(Number(user)).not.toBe(0);
  });

  it('EXPOSE matches the config defaults (port, metrics.port)', () => {
    const exposed = finalOf('EXPOSE').flatMap((i) => i.args.split(/\s+/)).map((p) => Number(p.replace(/\/tcp$/, '')));
    expect(exposed.sort()).toEqual([DEFAULTS.port, DEFAULTS.metrics.port].sort());
  });

  it('HEALTHCHECK asks /healthz on the default metrics port with node (slim has no curl)', () => {
    const hc = finalOf('HEALTHCHECK');
    expect(hc).toHaveLength(1);
    const cmd = execForm(hc[0]!.args);
    expect(cmd[0]).toBe('node');
    const script = cmd.join(' ');
    expect(script).toContain('/healthz');
    expect(script).toContain(`|| ${DEFAULTS.metrics.port})`);
  });

  it('ENTRYPOINT is the broker binary in exec form (node is PID 1 and gets SIGTERM)', () => {
    const ep = finalOf('ENTRYPOINT');
    expect(ep).toHaveLength(1);
    const cmd = execForm(ep[0]!.args);
    expect(cmd).toEqual(['node', 'packages/core/src/bin/starling.ts']);
    const root = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(root.scripts.start).toBe(cmd.join(' '));
  });

  it('STARLING_CONFIG points at a config file the image carries, and that file is valid', () => {
    const env = Object.assign({}, ...finalOf('ENV').map((i) => parseEnv(i.args))) as Record<string, string>;
    expect(env.STARLING_CONFIG).toBe('/etc/starling/starling.yaml');
    const copy = copies.find((c) => !c.from && c.dest === env.STARLING_CONFIG);
    expect(copy, 'a COPY to STARLING_CONFIG').toBeDefined();
    const body = fs.readFileSync(path.join(REPO_ROOT, copy!.sources[0]!), 'utf8');
    expect(() => parseConfig(parseYaml(body) ?? {})).not.toThrow();
  });
});

// ---- the image, played without Docker -------------------------------------------------------------------

async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

function pnpmCommand(): string[] {
  // The same pnpm the repository uses (and the Dockerfile installs); run by the current Node.
  const which = spawnSync('pnpm', ['--version'], { encoding: 'utf8' });
  if (which.status !== 0) throw new Error('pnpm is not on PATH');
  return ['pnpm'];
}

describe('the image, built and started without Docker', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'starling-image-'));
  let child: ChildProcess | undefined;
  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** Each stage's file system is a directory; WORKDIR and absolute paths are inside it. */
  const rootOf = (stage: number) => path.join(tmp, `stage${stage}`);

  it('COPYs and `pnpm install --prod --frozen-lockfile` as the Dockerfile says, then the broker starts and /healthz answers 200', async () => {
    const pnpm = pnpmCommand();
    let installLog = '';
    let runtime = { env: {} as Record<string, string>, workdir: '/' }; // the last stage's
    for (const [n, stage] of stages.entries()) {
      const root = rootOf(n);
      let workdir = '/';
      let env: Record<string, string> = {};
      for (const ins of stage.instructions) {
        if (ins.cmd === 'WORKDIR') {
          workdir = path.posix.resolve(workdir, ins.args);
          fs.mkdirSync(path.join(root, workdir), { recursive: true });
        } else if (ins.cmd === 'ENV') {
          env = { ...env, ...parseEnv(ins.args) };
        } else if (ins.cmd === 'COPY') {
          const c = parseCopy(ins);
          const dest = path.join(root, path.posix.resolve(workdir, c.dest));
          for (const src of c.sources) {
            const from = c.from ? path.join(rootOf(stages.findIndex((s) => s.name === c.from)), src) : path.join(REPO_ROOT, src);
            // Docker: a file copied to a path ending in / (or with several sources) lands inside it.
            const target = c.dest.endsWith('/') || c.sources.length > 1 ? path.join(dest, path.basename(src)) : dest;
            fs.mkdirSync(path.dirname(target), { recursive: true });
            fs.cpSync(from, target, { recursive: true, verbatimSymlinks: true });
          }
        } else if (ins.cmd === 'RUN') {
          if (/^npm install -g pnpm@/.test(ins.args)) continue; // pnpm is already here (same version: checked above)
          const argv = ins.args.match(/"[^"]*"|\S+/g)!.map((a) => a.replace(/^"(.*)"$/, '$1'));
          expect(argv[0]).toBe('pnpm');
          const cwd = path.join(root, workdir);
          // Offline first (the machine's pnpm store has every locked package); online if it lacks one.
          let run = spawnSync(pnpm[0]!, [...argv.slice(1), '--offline'], { cwd, encoding: 'utf8', env: { ...process.env, CI: 'true' } });
          if (run.status !== 0) run = spawnSync(pnpm[0]!, argv.slice(1), { cwd, encoding: 'utf8', env: { ...process.env, CI: 'true' } });
          installLog += run.stdout + run.stderr;
          expect(run.status, `${ins.args}\n${installLog}`).toBe(0);
        }
      }
      runtime = { env, workdir };
    }

    const root = rootOf(stages.length - 1);
    const appDir = path.join(root, runtime.workdir);

    // Production only: none of the dev tools, and not the `node` package (the image's node is 26).
    const rootModules = path.join(appDir, 'node_modules');
    for (const dev of ['node', 'typescript', 'vitest', '.bin/node']) expect(fs.existsSync(path.join(rootModules, dev)), dev).toBe(false);
    const store = fs.readdirSync(path.join(rootModules, '.pnpm'));
    expect(store.filter((d) => /^(node|typescript|vitest|mqtt)@/.test(d))).toEqual([]);
    // What the broker imports resolves inside the image.
    for (const [pkg, dep] of [['core', 'zod'], ['core', 'prom-client'], ['router', 'ioredis'], ['worker', 'mqtt-packet'], ['worker', '@starling/core']] as const) {
      expect(fs.existsSync(path.join(appDir, 'packages', pkg, 'node_modules', dep, 'package.json')), `${pkg} → ${dep}`).toBe(true);
    }

    // Start it as the image would: ENTRYPOINT from WORKDIR, the image's ENV, as USER when we can switch.
    const entry = execForm(finalOf('ENTRYPOINT')[0]!.args);
    const metricsPort = await freePort();
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOSTNAME: 'starling-image-test',
      ...runtime.env,
      STARLING_CONFIG: path.join(root, runtime.env.STARLING_CONFIG!),
      // Loopback and free ports on this shared machine; everything else as the image ships it.
      STARLING_HOST: '127.0.0.1',
      STARLING_PORT: '0',
      STARLING_METRICS__HOST: '127.0.0.1',
      STARLING_METRICS__PORT: String(metricsPort),
      STARLING_WORKERS: '2',
    };
    const [uid, gid] = finalOf('USER').at(-1)!.args.split(':').map(Number);
    // As root we can run it as the image's user, provided that user can reach this Node binary (a checkout
    // under a private home directory cannot be): otherwise as ourselves.
    let asUser: { uid?: number; gid?: number } = {};
    if (process.getuid?.() === 0) {
      fs.chmodSync(tmp, 0o755); // mkdtemp makes it 0700; the image's files are world-readable
      const probe = spawnSync(process.execPath, ['-e', '0'], { uid: uid!, gid: gid ?? uid!, cwd: appDir, timeout: 10_000 });
      if (probe.status === 0) asUser = { uid: uid!, gid: gid ?? uid! };
      else console.warn(`running the broker as uid ${process.getuid()}: uid ${uid} cannot execute ${process.execPath}`);
    }
    child = spawn(process.execPath, entry.slice(1), { cwd: appDir, env, stdio: ['ignore', 'pipe', 'pipe'], ...asUser });
    const stderr: string[] = [];
    readline.createInterface({ input: child.stderr! }).on('line', (l) => stderr.push(l));
    const lines = readline.createInterface({ input: child.stdout! });
    const exited = once(child, 'exit').then(([code]) => {
      throw new Error(`broker exited with ${String(code)} before listening:\n${stderr.join('\n')}`);
    });
    const listening = new Promise<Record<string, unknown>>((resolve) => {
      lines.on('line', (l) => {
        try {
          const j = JSON.parse(l) as Record<string, unknown>;
          if (j.msg === 'starling listening') resolve(j);
        } catch {
          /* not JSON */
        }
      });
    });
    const line = await Promise.race([listening, exited]);
    expect(line.metricsPort).toBe(metricsPort);
    expect(line.nodeId).toBe('starling-image-test');

    const res = await fetch(`http://127.0.0.1:${metricsPort}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.text()).toMatch(/^ok/);
    expect((await fetch(`http://127.0.0.1:${metricsPort}/readyz`)).status).toBe(200);

    // The HEALTHCHECK command itself, as Docker would run it inside the container.
    const hc = execForm(finalOf('HEALTHCHECK')[0]!.args);
    const check = spawnSync(process.execPath, hc.slice(1), { env, encoding: 'utf8', timeout: 10_000 });
    expect(check.status, check.stderr).toBe(0);

    // docker stop: SIGTERM, and the broker exits 0 by itself.
    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).toBe(0);
    // With the broker gone the health check fails (so Docker would mark the container unhealthy).
    const after = spawnSync(process.execPath, hc.slice(1), { env, encoding: 'utf8', timeout: 10_000 });
    expect(after.status).toBe(1);
  }, 120_000);
});
