import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.ts';

const ENTRY = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src/bin/starling.ts');

describe('configuration', () => {
  it('has a named, non-zero default for every timeout (drainMs: 0, no drain wait, by design)', () => {
    const cfg = loadConfig([], {});
    expect(cfg.timeouts.connectMs).toBe(10_000);
    for (const [name, value] of Object.entries(cfg.timeouts)) {
      if (name === 'drainMs') expect(value, name).toBe(0);
      else expect(value, name).toBeGreaterThan(0);
    }
  });

  it('layers file < environment < flags', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'starling-cfg-'));
    const file = path.join(dir, 'starling.yaml');
    writeFileSync(file, 'port: 1000\nmetrics:\n  port: 2000\ntimeouts:\n  connectMs: 3000\n');
    const cfg = loadConfig(['--config', file, '--timeouts.connectMs', '4000'], { STARLING_PORT: '1001', STARLING_METRICS__PORT: '2001' });
    expect(cfg.port).toBe(1001);
    expect(cfg.metrics.port).toBe(2001);
    expect(cfg.timeouts.connectMs).toBe(4000);
  });

  it('names the bad field and what it allows', () => {
    expect(() => loadConfig(['--timeouts.connectMs', '0'], {})).toThrow(/timeouts\.connectMs/);
    expect(() => loadConfig(['--logLevel', 'loud'], {})).toThrow(/logLevel.*(trace|debug|info)/s);
    expect(() => loadConfig(['--nosuchkey', '1'], {})).toThrow(ConfigError);
  });

  it('stops start-up on a bad value with exit code 2 and the field in the message', () => {
    const res = spawnSync(process.execPath, [ENTRY, '--port', '70000'], { encoding: 'utf8', timeout: 15_000 });
    expect(res.status).toBe(2);
    expect(res.stderr).toMatch(/port/);
  });
});

describe('configuration strictness', () => {
  it('refuses a misspelled nested key instead of ignoring it', () => {
    expect(() => loadConfig(['--timeouts.drainMS', '5'], {})).toThrow(/timeouts\.drainMS: unknown key/);
    expect(() => loadConfig([], { STARLING_LIMITS__MAXQUEUD: '5' })).toThrow(/limits\.maxqueud: unknown key/);
  });

  it('keeps a numeric-looking value as text where the field is a string (a password "123456")', () => {
    const cfg = loadConfig([], { STARLING_REDIS__PASSWORD: '0123456' });
    expect(cfg.redis.password).toBe('0123456');
    expect(loadConfig(['--nodeId', '42'], {}).nodeId).toBe('42');
  });
});
