// deploy/k8s without a cluster: parse every manifest and check what would break a rollout — ports and
// probes that disagree with the config the pod will actually run with, selectors that select nothing,
// PDB/HPA/ServiceMonitor aimed at the wrong thing, config keys or STARLING_* variables the broker
// refuses, kustomizations listing missing files, a grace period shorter than the drain. The checks run
// on the base as written and, where kubectl is installed, on `kubectl kustomize` of the example overlay.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { configSchema, loadConfig, parseConfig, type Config } from '../packages/core/src/config.ts';
import { REPO_ROOT } from './helpers/broker.ts';

const K8S = path.join(REPO_ROOT, 'deploy/k8s');
const DEFAULTS = parseConfig({});

// ---- helpers ------------------------------------------------------------------------------------------

type Obj = Record<string, any>;

function loadDocs(file: string): Obj[] {
  const docs = parseAllDocuments(fs.readFileSync(file, 'utf8'));
  return docs.map((d) => {
    if (d.errors.length) throw new Error(`${path.relative(REPO_ROOT, file)}: ${d.errors.map((e) => e.message).join('; ')}`);
    return d.toJS() as Obj;
  }).filter((d) => d != null);
}

function walkYaml(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? walkYaml(p) : /\.ya?ml$/.test(e.name) ? [p] : [];
  });
}

/** Unwraps default/prefault/optional/nullable down to the type that has the shape. */
function unwrap(schema: any): any {
  let s = schema;
  while (s?._zod?.def?.innerType) s = s._zod.def.innerType;
  return s;
}

/** Whether the broker's schema has this key path (nodeId, timeouts.drainMs, …). */
function schemaHas(keyPath: string[]): boolean {
  let s: any = configSchema;
  for (const key of keyPath) {
    s = unwrap(s);
    if (s?._zod?.def?.type !== 'object' || !(key in s.shape)) return false;
    s = s.shape[key];
  }
  return true;
}

/** Key paths of `raw` the schema does not know. parseConfig rejects unknown keys only at the top level
 *  (nested objects strip them silently), so a typo like timeouts.drainMS would be ignored at start-up. */
function unknownKeys(raw: unknown, schema: any = configSchema, prefix: string[] = []): string[] {
  const s = unwrap(schema);
  const type = s?._zod?.def?.type;
  if (type === 'array' && Array.isArray(raw)) return raw.flatMap((item, i) => unknownKeys(item, s._zod.def.element, [...prefix, String(i)]));
  if (type !== 'object' || typeof raw !== 'object' || raw === null || Array.isArray(raw)) return [];
  return Object.entries(raw).flatMap(([k, v]) => (k in s.shape ? unknownKeys(v, s.shape[k], [...prefix, k]) : [[...prefix, k].join('.')]));
}

/** The config loader's rule: STARLING_TIMEOUTS__DRAIN_MS → timeouts.drainMs. */
function envToPath(name: string): string[] {
  return name
    .slice('STARLING_'.length)
    .split('__')
    .map((p) => p.toLowerCase().replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()));
}

function matches(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  if (!selector || Object.keys(selector).length === 0) return false;
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

const WORKLOAD_KINDS = new Set(['StatefulSet', 'Deployment', 'DaemonSet']);

interface Resolved {
  /** Every object the install creates. */
  objects: Obj[];
  /** The broker's config file text as the ConfigMap carries it. */
  configText: string;
}

function byKind(objects: Obj[], kind: string): Obj[] {
  return objects.filter((o) => o.kind === kind);
}

function broker(objects: Obj[]): Obj {
  const sets = byKind(objects, 'StatefulSet').filter((o) => o.metadata.name === 'starling');
  expect(sets, 'one StatefulSet named starling').toHaveLength(1);
  return sets[0]!;
}

function brokerContainer(objects: Obj[]): Obj {
  const c = broker(objects).spec.template.spec.containers.find((c: Obj) => c.name === 'starling');
  expect(c, 'container starling').toBeDefined();
  return c;
}

/** Placeholder values for env entries Kubernetes fills in (pod name, secrets). */
function podEnv(container: Obj): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of container.env ?? []) {
    if (e.value !== undefined) env[e.name] = String(e.value);
    else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.name') env[e.name] = 'starling-0';
    else if (e.valueFrom?.secretKeyRef) env[e.name] = 'secret-from-kubernetes';
    else if (e.valueFrom?.fieldRef) env[e.name] = `field-${e.valueFrom.fieldRef.fieldPath}`;
  }
  return env;
}

/** The config a broker pod will run with: the ConfigMap's file (mounted at STARLING_CONFIG) + its env. */
function effectiveConfig(r: Resolved): Config {
  const env = podEnv(brokerContainer(r.objects));
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'starling-k8s-')), 'starling.yaml');
  const raw = (parseYaml(r.configText) ?? {}) as Obj;
  fs.writeFileSync(file, JSON.stringify(raw));
  try {
    return loadConfig([], { ...env, STARLING_CONFIG: file });
  } finally {
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
  }
}

function portNumber(container: Obj, port: string | number): number | undefined {
  if (typeof port === 'number') return port;
  return container.ports?.find((p: Obj) => p.name === port)?.containerPort;
}

// ---- the two views: the base as written, the overlay as kustomize renders it --------------------------

function baseView(): Resolved {
  const objects: Obj[] = [];
  let configText = '';
  for (const dir of ['base', 'redis']) {
    const k = parseYaml(fs.readFileSync(path.join(K8S, dir, 'kustomization.yaml'), 'utf8')) as Obj;
    for (const r of k.resources ?? []) objects.push(...loadDocs(path.join(K8S, dir, r)));
    for (const g of k.configMapGenerator ?? []) {
      const data: Record<string, string> = {};
      for (const f of g.files ?? []) data[path.basename(f)] = fs.readFileSync(path.join(K8S, dir, f), 'utf8');
      objects.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: g.name }, data });
      if (g.name === 'starling-config') configText = data['starling.yaml']!;
    }
  }
  return { objects, configText };
}

const kubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' }).status === 0;

function overlayView(): Resolved {
  const out = spawnSync('kubectl', ['kustomize', path.join(K8S, 'overlays/example')], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (out.status !== 0) throw new Error(`kubectl kustomize failed:\n${out.stderr}`);
  const objects = parseAllDocuments(out.stdout).map((d) => d.toJS() as Obj).filter(Boolean);
  const volume = broker(objects).spec.template.spec.volumes.find((v: Obj) => v.name === 'config');
  const cm = byKind(objects, 'ConfigMap').find((c) => c.metadata.name === volume.configMap.name);
  return { objects, configText: cm?.data?.['starling.yaml'] ?? '' };
}

// ---- files --------------------------------------------------------------------------------------------

describe('deploy/k8s files', () => {
  const files = walkYaml(K8S);

  /** Files kustomize reads as data (the broker's config file), not as manifests. */
  const dataFiles = new Set(
    files
      .filter((f) => path.basename(f) === 'kustomization.yaml')
      .flatMap((f) => ((loadDocs(f)[0]!.configMapGenerator ?? []) as Obj[]).flatMap((g) => (g.files ?? []).map((x: string) => path.resolve(path.dirname(f), x)))),
  );

  it('every manifest parses (multi-document) and names its apiVersion, kind and metadata.name', () => {
    expect(files.length).toBeGreaterThan(10);
    expect(dataFiles.size).toBeGreaterThan(0);
    for (const f of files.filter((f) => !dataFiles.has(f))) {
      const docs = loadDocs(f);
      expect(docs.length, path.relative(REPO_ROOT, f)).toBeGreaterThan(0);
      for (const d of docs) {
        expect(d.apiVersion, f).toBeTruthy();
        expect(d.kind, f).toBeTruthy();
        if (d.kind !== 'Kustomization') expect(d.metadata?.name, f).toBeTruthy();
      }
    }
  });

  it('every kustomization lists files and directories that exist, and every manifest is listed somewhere', () => {
    const listed = new Set<string>();
    for (const f of files.filter((f) => path.basename(f) === 'kustomization.yaml')) {
      const dir = path.dirname(f);
      const k = loadDocs(f)[0]!;
      const refs: string[] = [
        ...(k.resources ?? []),
        ...(k.patches ?? []).map((p: Obj) => p.path).filter(Boolean),
        ...(k.configMapGenerator ?? []).flatMap((g: Obj) => g.files ?? []),
        ...(k.secretGenerator ?? []).flatMap((g: Obj) => g.files ?? []),
      ];
      expect(refs.length, f).toBeGreaterThan(0);
      for (const ref of refs) {
        const abs = path.resolve(dir, String(ref).replace(/^[^=]+=/, ''));
        expect(fs.existsSync(abs), `${path.relative(REPO_ROOT, f)} lists ${ref}, which does not exist`).toBe(true);
        if (fs.statSync(abs).isDirectory()) expect(fs.existsSync(path.join(abs, 'kustomization.yaml')), `${ref} has no kustomization.yaml`).toBe(true);
        listed.add(abs);
      }
    }
    for (const f of files) if (path.basename(f) !== 'kustomization.yaml') expect(listed.has(f), `${path.relative(REPO_ROOT, f)} is in no kustomization`).toBe(true);
  });

  it("the config file in the ConfigMap is one the broker accepts (every key in the schema)", () => {
    const { configText } = baseView();
    const raw = parseYaml(configText) as Obj;
    expect(raw).toBeTypeOf('object');
    expect(() => parseConfig(raw)).not.toThrow();
    expect(unknownKeys(raw)).toEqual([]);
  });

  it('the ConfigMap carries the Grafana dashboard exactly as deploy/grafana/starling-dashboard.json', () => {
    const cm = loadDocs(path.join(K8S, 'base/grafana-dashboard.yaml'))[0]!;
    expect(cm.kind).toBe('ConfigMap');
    expect(cm.metadata.labels.grafana_dashboard).toBe('1');
    const json = fs.readFileSync(path.join(REPO_ROOT, 'deploy/grafana/starling-dashboard.json'), 'utf8');
    expect(JSON.parse(cm.data['starling-dashboard.json'])).toEqual(JSON.parse(json));
  });
});

// ---- what would break a rollout, on each view -----------------------------------------------------------

const views: Array<[string, () => Resolved]> = [['base (as written)', baseView]];
if (kubectl) views.push(['overlays/example (kubectl kustomize)', overlayView]);

describe.each(views)('%s', (_name, view) => {
  const r = view();
  const { objects } = r;
  const sts = broker(objects);
  const pod = sts.spec.template;
  const container = brokerContainer(objects);
  const cfg = effectiveConfig(r);

  it('the effective config listens where Kubernetes looks: all interfaces, metrics on', () => {
    expect(cfg.host).toBe('0.0.0.0');
    expect(cfg.metrics.host).toBe('0.0.0.0');
    expect(cfg.metrics.enabled).toBe(true);
    expect(cfg.nodeId).toBe('starling-0'); // from the pod's name
  });

  it("container ports are the broker's config (defaults unless the config file moves them)", () => {
    expect(portNumber(container, 'mqtt')).toBe(cfg.port);
    expect(portNumber(container, 'metrics')).toBe(cfg.metrics.port);
    expect(cfg.port).toBe(DEFAULTS.port);
    expect(cfg.metrics.port).toBe(DEFAULTS.metrics.port);
  });

  it('liveness and startup probe /healthz, readiness probes /readyz, on the metrics port', () => {
    for (const [probe, want] of [['livenessProbe', '/healthz'], ['startupProbe', '/healthz'], ['readinessProbe', '/readyz']] as const) {
      const p = container[probe];
      expect(p, probe).toBeDefined();
      expect(p.httpGet.path, probe).toBe(want);
      expect(portNumber(container, p.httpGet.port), probe).toBe(cfg.metrics.port);
    }
    expect(Number(pod.metadata.annotations['prometheus.io/port'])).toBe(cfg.metrics.port);
    expect(pod.metadata.annotations['prometheus.io/path']).toBe('/metrics');
  });

  it('the node id is the pod name (downward API)', () => {
    const e = container.env.find((e: Obj) => e.name === 'STARLING_NODE_ID');
    expect(e?.valueFrom?.fieldRef?.fieldPath).toBe('metadata.name');
  });

  it('every STARLING_* variable is a key of the config schema (or STARLING_CONFIG)', () => {
    const workloads = objects.filter((o) => WORKLOAD_KINDS.has(o.kind));
    for (const w of workloads) {
      for (const c of w.spec.template.spec.containers) {
        for (const e of c.env ?? []) {
          if (!e.name.startsWith('STARLING_') || e.name === 'STARLING_CONFIG') continue;
          const keyPath = envToPath(e.name);
          expect(schemaHas(keyPath), `${e.name} → ${keyPath.join('.')} is not a config key`).toBe(true);
        }
      }
    }
  });

  it('STARLING_CONFIG is where the ConfigMap is mounted, and the mounted ConfigMap has that file', () => {
    const cfgPath = container.env.find((e: Obj) => e.name === 'STARLING_CONFIG')?.value ?? '/etc/starling/starling.yaml';
    const mount = container.volumeMounts.find((m: Obj) => cfgPath.startsWith(`${m.mountPath}/`));
    expect(mount, `a volume mounted over ${cfgPath}`).toBeDefined();
    const volume = pod.spec.volumes.find((v: Obj) => v.name === mount.name);
    const cm = byKind(objects, 'ConfigMap').find((c) => c.metadata.name === volume.configMap.name);
    expect(cm, `ConfigMap ${volume.configMap.name}`).toBeDefined();
    expect(Object.keys(cm!.data)).toContain(path.basename(cfgPath));
  });

  it('secretKeyRefs name Secrets and keys that exist', () => {
    for (const w of objects.filter((o) => WORKLOAD_KINDS.has(o.kind))) {
      for (const c of w.spec.template.spec.containers) {
        for (const e of c.env ?? []) {
          const ref = e.valueFrom?.secretKeyRef;
          if (!ref) continue;
          const secret = byKind(objects, 'Secret').find((s) => s.metadata.name === ref.name);
          expect(secret, `${w.metadata.name}: Secret ${ref.name}`).toBeDefined();
          expect(Object.keys({ ...secret!.data, ...secret!.stringData }), `${ref.name}.${ref.key}`).toContain(ref.key);
        }
      }
    }
  });

  it('each workload selects its own pod template, and every Service selects pods on ports they have', () => {
    const workloads = objects.filter((o) => WORKLOAD_KINDS.has(o.kind));
    for (const w of workloads) expect(matches(w.spec.selector.matchLabels, w.spec.template.metadata.labels), w.metadata.name).toBe(true);
    for (const svc of byKind(objects, 'Service')) {
      const targets = workloads.filter((w) => matches(svc.spec.selector, w.spec.template.metadata.labels));
      expect(targets.length, `Service ${svc.metadata.name} selects no pods`).toBe(1);
      const containers = targets[0]!.spec.template.spec.containers as Obj[];
      for (const port of svc.spec.ports) {
        const found = containers.some((c) => portNumber(c, port.targetPort ?? port.port) !== undefined && (typeof port.targetPort === 'string' || c.ports.some((p: Obj) => p.containerPort === port.targetPort)));
        expect(found, `Service ${svc.metadata.name} port ${port.name} → ${port.targetPort}`).toBe(true);
      }
    }
  });

  it('the StatefulSet is governed by a headless Service that selects its pods; MQTT is exposed on the config port', () => {
    const headless = byKind(objects, 'Service').find((s) => s.metadata.name === sts.spec.serviceName);
    expect(headless?.spec.clusterIP).toBe('None');
    expect(matches(headless!.spec.selector, pod.metadata.labels)).toBe(true);
    const mqtt = byKind(objects, 'Service').find((s) => s.metadata.name === 'starling')!;
    expect(mqtt.spec.ports.find((p: Obj) => p.name === 'mqtt').port).toBe(cfg.port);
  });

  it('the PodDisruptionBudget covers the broker pods and still lets one go', () => {
    const pdbs = byKind(objects, 'PodDisruptionBudget');
    expect(pdbs).toHaveLength(1);
    expect(matches(pdbs[0]!.spec.selector.matchLabels, pod.metadata.labels)).toBe(true);
    const redis = objects.find((o) => o.kind === 'Deployment' && o.metadata.name === 'starling-redis');
    if (redis) expect(matches(pdbs[0]!.spec.selector.matchLabels, redis.spec.template.metadata.labels)).toBe(false);
    expect(pdbs[0]!.spec.maxUnavailable).toBeGreaterThanOrEqual(1);
  });

  it('the HPA scales the broker StatefulSet, which leaves replicas to it, on CPU the pods request', () => {
    const hpas = byKind(objects, 'HorizontalPodAutoscaler');
    expect(hpas).toHaveLength(1);
    const ref = hpas[0]!.spec.scaleTargetRef;
    expect([ref.apiVersion, ref.kind, ref.name]).toEqual([sts.apiVersion, sts.kind, sts.metadata.name]);
    expect(sts.spec.replicas, 'replicas in the manifest would fight the HPA on every apply').toBeUndefined();
    expect(hpas[0]!.spec.minReplicas).toBeGreaterThanOrEqual(2);
    expect(hpas[0]!.spec.maxReplicas).toBeGreaterThanOrEqual(hpas[0]!.spec.minReplicas);
    for (const m of hpas[0]!.spec.metrics) if (m.type === 'Resource') expect(container.resources.requests[m.resource.name], m.resource.name).toBeDefined();
  });

  it('the ServiceMonitor scrapes exactly one Service, on its metrics port, at /metrics', () => {
    const sms = byKind(objects, 'ServiceMonitor');
    expect(sms).toHaveLength(1);
    expect(sms[0]!.apiVersion).toBe('monitoring.coreos.com/v1');
    const selected = byKind(objects, 'Service').filter((s) => matches(sms[0]!.spec.selector.matchLabels, s.metadata.labels));
    expect(selected.map((s) => s.metadata.name), 'one Service, or every pod is scraped twice').toHaveLength(1);
    expect(matches(selected[0]!.spec.selector, pod.metadata.labels)).toBe(true);
    for (const ep of sms[0]!.spec.endpoints) {
      expect(ep.path).toBe('/metrics');
      const svcPort = selected[0]!.spec.ports.find((p: Obj) => p.name === ep.port);
      expect(svcPort, `Service port named ${ep.port}`).toBeDefined();
      expect(portNumber(container, svcPort.targetPort)).toBe(cfg.metrics.port);
    }
  });

  it('the grace period covers preStop + drain + shutdown (and the broker exits by itself before it)', () => {
    const grace = pod.spec.terminationGracePeriodSeconds as number;
    const cmd = container.lifecycle?.preStop?.exec?.command as string[] | undefined;
    const preStop = cmd?.[0] === 'sleep' ? Number(cmd[1]) : (container.lifecycle?.preStop?.sleep?.seconds ?? 0);
    expect(cfg.timeouts.drainMs, 'a drain window lets the load balancer take the pod out first').toBeGreaterThan(0);
    const needed = preStop + cfg.timeouts.drainMs / 1000 + cfg.timeouts.shutdownMs / 1000;
    expect(grace, `grace ${grace} s < preStop ${preStop} + drain + shutdown = ${needed} s`).toBeGreaterThan(needed);
  });

  it('every container has resource requests and limits; workers fit the CPU limit', () => {
    for (const w of objects.filter((o) => WORKLOAD_KINDS.has(o.kind))) {
      for (const c of w.spec.template.spec.containers) {
        for (const k of ['requests', 'limits']) for (const res of ['cpu', 'memory']) expect(c.resources?.[k]?.[res], `${w.metadata.name}/${c.name} ${k}.${res}`).toBeDefined();
      }
    }
    const cpu = String(container.resources.limits.cpu);
    const cores = cpu.endsWith('m') ? Number(cpu.slice(0, -1)) / 1000 : Number(cpu);
    expect(cfg.workers).toBeLessThanOrEqual(Math.max(1, Math.ceil(cores)));
  });

  it("the pod runs as the image's non-root user", () => {
    const dockerfile = fs.readFileSync(path.join(REPO_ROOT, 'deploy/docker/Dockerfile'), 'utf8');
    const uid = Number(/^USER\s+(\d+)/m.exec(dockerfile)![1]);
    expect(pod.spec.securityContext.runAsNonRoot).toBe(true);
    expect(pod.spec.securityContext.runAsUser).toBe(uid);
  });

  it('the configured Redis URL names a Service of this install, on its port', () => {
    const raw = parseYaml(r.configText) as Obj;
    const url = raw.redis?.url as string | undefined;
    expect(url, 'redis.url in the config file').toBeDefined();
    const u = new URL(url!);
    const host = u.hostname.split('.')[0]!;
    const svc = byKind(objects, 'Service').find((s) => s.metadata.name === host);
    expect(svc, `Service ${host}`).toBeDefined();
    expect(svc!.spec.ports.map((p: Obj) => p.port)).toContain(Number(u.port || 6379));
    expect(parseConfig({ redis: raw.redis }).redis.url).toBe(url);
  });

  it.skipIf(_name.startsWith('base'))('the overlay: one namespace, the image renamed, MQTT on a LoadBalancer', () => {
    const namespaced = objects.filter((o) => o.kind !== 'Namespace');
    const ns = new Set(namespaced.map((o) => o.metadata.namespace));
    expect([...ns]).toEqual(['starling']);
    expect(byKind(objects, 'Namespace').map((n) => n.metadata.name)).toEqual(['starling']);
    expect(container.image).toMatch(/^registry\.example\.com\/starling:/);
    const mqtt = byKind(objects, 'Service').find((s) => s.metadata.name === 'starling')!;
    expect(mqtt.spec.type).toBe('LoadBalancer');
    // the generated ConfigMap name (with its hash) was carried into the volume
    expect(pod.spec.volumes.find((v: Obj) => v.name === 'config').configMap.name).toMatch(/^starling-config-[a-z0-9]+$/);
  });
});
