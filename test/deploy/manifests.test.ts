/**
 * Every deployment file under docker/ parses, fits the schema of what it is (Kubernetes kinds:
 * compact JSON schemas written from the Kubernetes API reference; Falco overrides: Falco's own
 * config schema from ../shared/falco-reference; companion configs: our config schema) and agrees
 * with the rest: probe ports and paths, mounts and volumes, read-only runtime sockets, no
 * privileged companion, node-local Service, NetworkPolicy selection, compose file references.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type AnySchema } from 'ajv';
import { parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import { configSchema, type Config } from '../../src/config/schema.js';
import { loadConfig } from '../../src/config/validate.js';
import { scenarioByName } from '../../src/emulate/scenarios.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { isLoopbackListen, OpsServer, opsPlacement } from '../../src/server/ops.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const DOCKER = join(ROOT, 'docker');
const K8S = join(DOCKER, 'k8s');
const FALCO_SCHEMA = resolve(ROOT, '../shared/falco-reference/falco-config.schema.json');
/** The Falco receiver's port (http.listen). */
const PORT = 2804;
/** The operations endpoints' port where the manifests open them (ops.listen in the DaemonSet ConfigMap). */
const OPS_PORT = 2805;

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const objs = (v: unknown): Obj[] => arr(v).filter(isObj);
const get = (o: unknown, ...path: string[]): unknown => path.reduce<unknown>((cur, k) => (isObj(cur) ? cur[k] : undefined), o);

function yamlFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...yamlFiles(p));
    else if (/\.ya?ml$/.test(name)) out.push(p);
  }
  return out.sort();
}

function docsOf(file: string): unknown[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'), { uniqueKeys: true });
  const list = Array.isArray(docs) ? docs : [docs];
  const out: unknown[] = [];
  for (const d of list) {
    if (d.errors.length > 0) throw new Error(`${relative(ROOT, file)}: ${d.errors.map((e) => e.message).join('; ')}`);
    const v = d.toJS() as unknown;
    if (v !== null && v !== undefined) out.push(v);
  }
  return out;
}

const one = (file: string): Obj => {
  const d = docsOf(file);
  expect(d, relative(ROOT, file)).toHaveLength(1);
  const v = d[0];
  if (!isObj(v)) throw new Error(`${relative(ROOT, file)}: not a mapping`);
  return v;
};

// ---------------------------------------------------------------------------------------------
// Compact schemas of the Kubernetes kinds we use (required fields and types from the API reference).
const str = { type: 'string', minLength: 1 };
const labels = { type: 'object', additionalProperties: { type: 'string' } };
const metadata = { type: 'object', required: ['name'], properties: { name: str, namespace: str, labels, annotations: labels } };
const intOrString = { anyOf: [{ type: 'integer', minimum: 1, maximum: 65535 }, { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', maxLength: 15 }] };
const quantity = { anyOf: [{ type: 'string', pattern: '^[0-9.]+(m|Ki|Mi|Gi|Ti|k|M|G)?$' }, { type: 'number' }] };
const resources = {
  type: 'object',
  additionalProperties: false,
  properties: { requests: { type: 'object', additionalProperties: quantity }, limits: { type: 'object', additionalProperties: quantity } },
};
const probe = {
  type: 'object',
  additionalProperties: false,
  properties: {
    httpGet: { type: 'object', required: ['port'], additionalProperties: false, properties: { path: { type: 'string', pattern: '^/' }, port: intOrString, scheme: { enum: ['HTTP', 'HTTPS'] } } },
    exec: { type: 'object', required: ['command'], properties: { command: { type: 'array', items: { type: 'string' }, minItems: 1 } } },
    tcpSocket: { type: 'object', required: ['port'], properties: { port: intOrString } },
    initialDelaySeconds: { type: 'integer', minimum: 0 },
    periodSeconds: { type: 'integer', minimum: 1 },
    timeoutSeconds: { type: 'integer', minimum: 1 },
    failureThreshold: { type: 'integer', minimum: 1 },
    successThreshold: { type: 'integer', minimum: 1 },
  },
  oneOf: [{ required: ['httpGet'] }, { required: ['exec'] }, { required: ['tcpSocket'] }],
};
const capabilities = { type: 'object', additionalProperties: false, properties: { add: { type: 'array', items: { type: 'string' } }, drop: { type: 'array', items: { type: 'string' } } } };
const containerSecurityContext = {
  type: 'object',
  additionalProperties: false,
  properties: {
    runAsNonRoot: { type: 'boolean' },
    runAsUser: { type: 'integer', minimum: 0 },
    runAsGroup: { type: 'integer', minimum: 0 },
    privileged: { type: 'boolean' },
    allowPrivilegeEscalation: { type: 'boolean' },
    readOnlyRootFilesystem: { type: 'boolean' },
    capabilities,
    seccompProfile: { type: 'object', required: ['type'] },
  },
};
const container = (partial: boolean) => ({
  type: 'object',
  required: partial ? ['name'] : ['name', 'image'],
  additionalProperties: false,
  properties: {
    name: str,
    image: str,
    imagePullPolicy: { enum: ['Always', 'IfNotPresent', 'Never'] },
    command: { type: 'array', items: { type: 'string' } },
    args: { type: 'array', items: { type: 'string' } },
    env: { type: 'array', items: { type: 'object', required: ['name'], additionalProperties: false, properties: { name: str, value: { type: 'string' }, valueFrom: { type: 'object' } } } },
    ports: { type: 'array', items: { type: 'object', required: ['containerPort'], additionalProperties: false, properties: { name: { type: 'string', maxLength: 15 }, containerPort: { type: 'integer', minimum: 1, maximum: 65535 }, protocol: { enum: ['TCP', 'UDP', 'SCTP'] } } } },
    livenessProbe: probe,
    readinessProbe: probe,
    startupProbe: probe,
    resources,
    securityContext: containerSecurityContext,
    restartPolicy: { enum: ['Always'] },
    volumeMounts: { type: 'array', items: { type: 'object', required: ['name', 'mountPath'], additionalProperties: false, properties: { name: str, mountPath: { type: 'string', pattern: '^/' }, readOnly: { type: 'boolean' }, subPath: { type: 'string' } } } },
  },
});
const volume = {
  type: 'object',
  required: ['name'],
  additionalProperties: false,
  properties: {
    name: str,
    configMap: { type: 'object', required: ['name'], properties: { name: str } },
    emptyDir: { type: 'object', additionalProperties: false, properties: { medium: { enum: ['', 'Memory'] }, sizeLimit: quantity } },
    hostPath: {
      type: 'object',
      required: ['path'],
      additionalProperties: false,
      properties: { path: { type: 'string', pattern: '^/' }, type: { enum: ['', 'DirectoryOrCreate', 'Directory', 'FileOrCreate', 'File', 'Socket', 'CharDevice', 'BlockDevice'] } },
    },
  },
  minProperties: 2,
  maxProperties: 2,
};
const podSpec = (partial: boolean) => ({
  type: 'object',
  required: partial ? [] : ['containers'],
  additionalProperties: false,
  properties: {
    serviceAccountName: str,
    automountServiceAccountToken: { type: 'boolean' },
    terminationGracePeriodSeconds: { type: 'integer', minimum: 0 },
    tolerations: { type: 'array', items: { type: 'object' } },
    securityContext: {
      type: 'object',
      additionalProperties: false,
      properties: {
        runAsNonRoot: { type: 'boolean' },
        runAsUser: { type: 'integer' },
        runAsGroup: { type: 'integer' },
        fsGroup: { type: 'integer' },
        supplementalGroups: { type: 'array', items: { type: 'integer', minimum: 0 } },
        seccompProfile: { type: 'object', required: ['type'] },
      },
    },
    initContainers: { type: 'array', items: container(partial) },
    containers: { type: 'array', items: container(partial), minItems: 1 },
    volumes: { type: 'array', items: volume },
  },
});
const labelSelector = { type: 'object', properties: { matchLabels: labels }, additionalProperties: false };
/** A DaemonSet or Deployment: selector and pod template plus the kind's own spec fields. */
const workload = (own: Record<string, unknown>): AnySchema => ({
  type: 'object',
  required: ['apiVersion', 'kind', 'metadata', 'spec'],
  properties: {
    metadata,
    spec: {
      type: 'object',
      required: ['selector', 'template'],
      additionalProperties: false,
      properties: {
        selector: labelSelector,
        ...own,
        template: { type: 'object', required: ['spec'], properties: { metadata: { type: 'object', properties: { labels, annotations: labels } }, spec: podSpec(false) } },
      },
    },
  },
});
const k8sSchemas: Record<string, AnySchema> = {
  'v1/ConfigMap': { type: 'object', required: ['apiVersion', 'kind', 'metadata'], properties: { metadata, data: { type: 'object', additionalProperties: { type: 'string' } } } },
  'v1/ServiceAccount': { type: 'object', required: ['apiVersion', 'kind', 'metadata'], properties: { metadata, automountServiceAccountToken: { type: 'boolean' } } },
  'v1/Service': {
    type: 'object',
    required: ['apiVersion', 'kind', 'metadata', 'spec'],
    properties: {
      metadata,
      spec: {
        type: 'object',
        required: ['ports'],
        additionalProperties: false,
        properties: {
          type: { enum: ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'] },
          internalTrafficPolicy: { enum: ['Cluster', 'Local'] },
          selector: labels,
          ports: { type: 'array', minItems: 1, items: { type: 'object', required: ['port'], additionalProperties: false, properties: { name: str, port: { type: 'integer', minimum: 1, maximum: 65535 }, targetPort: intOrString, protocol: { enum: ['TCP', 'UDP', 'SCTP'] } } } },
        },
      },
    },
  },
  'apps/v1/DaemonSet': workload({
    updateStrategy: { type: 'object', properties: { type: { enum: ['RollingUpdate', 'OnDelete'] }, rollingUpdate: { type: 'object', properties: { maxUnavailable: intOrString, maxSurge: intOrString } } } },
    minReadySeconds: { type: 'integer' },
  }),
  'apps/v1/Deployment': workload({ replicas: { type: 'integer', minimum: 0 }, strategy: { type: 'object' } }),
  'networking.k8s.io/v1/NetworkPolicy': {
    type: 'object',
    required: ['apiVersion', 'kind', 'metadata', 'spec'],
    properties: {
      metadata,
      spec: {
        type: 'object',
        required: ['podSelector'],
        additionalProperties: false,
        properties: {
          podSelector: labelSelector,
          policyTypes: { type: 'array', items: { enum: ['Ingress', 'Egress'] } },
          ingress: {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              properties: {
                from: { type: 'array', items: { type: 'object', additionalProperties: false, properties: { podSelector: labelSelector, namespaceSelector: labelSelector, ipBlock: { type: 'object' } } } },
                ports: { type: 'array', items: { type: 'object', additionalProperties: false, properties: { protocol: { enum: ['TCP', 'UDP', 'SCTP'] }, port: intOrString } } },
              },
            },
          },
        },
      },
    },
  },
  'v1/Namespace': { type: 'object', required: ['apiVersion', 'kind', 'metadata'], properties: { metadata } },
  'batch/v1/Job': {
    type: 'object',
    required: ['apiVersion', 'kind', 'metadata', 'spec'],
    properties: {
      metadata,
      spec: {
        type: 'object',
        required: ['template'],
        additionalProperties: false,
        properties: {
          backoffLimit: { type: 'integer', minimum: 0 },
          activeDeadlineSeconds: { type: 'integer', minimum: 1 },
          ttlSecondsAfterFinished: { type: 'integer', minimum: 0 },
          template: {
            type: 'object',
            required: ['spec'],
            properties: {
              metadata: { type: 'object', properties: { labels, annotations: labels } },
              spec: { ...podSpec(false), required: ['containers', 'restartPolicy'], properties: { ...podSpec(false).properties, restartPolicy: { enum: ['Never', 'OnFailure'] }, nodeName: str } },
            },
          },
        },
      },
    },
  },
  'kustomize.config.k8s.io/v1beta1/Kustomization': {
    type: 'object',
    required: ['apiVersion', 'kind', 'resources'],
    properties: {
      namespace: str,
      resources: { type: 'array', items: { type: 'string' }, minItems: 1 },
      patches: { type: 'array', items: { type: 'object', required: ['path'], properties: { path: str, target: { type: 'object' } } } },
    },
  },
};
/** A strategic-merge patch of a DaemonSet: same shape, nothing required below the pod spec. */
const daemonSetPatchSchema: AnySchema = {
  type: 'object',
  required: ['apiVersion', 'kind', 'metadata', 'spec'],
  properties: { metadata, spec: { type: 'object', required: ['template'], additionalProperties: false, properties: { template: { type: 'object', required: ['spec'], properties: { spec: podSpec(true) } } } } },
};

const ajv = new Ajv({ allErrors: true, strict: false });
function validate(schema: AnySchema, value: unknown, what: string): void {
  const v = ajv.compile(schema);
  const ok = v(value);
  expect(ok ? [] : (v.errors ?? []).map((e) => `${what}${e.instancePath}: ${e.message ?? ''}`)).toEqual([]);
}

// ---------------------------------------------------------------------------------------------
// The k8s objects, by file.
interface K8sObj {
  file: string;
  obj: Obj;
}
const k8sYaml = yamlFiles(K8S).filter((f) => !f.endsWith('helm-values-falco.yaml'));
const k8sObjs: K8sObj[] = k8sYaml.flatMap((file) => docsOf(file).filter(isObj).map((obj) => ({ file, obj })));
const isPatch = (f: string): boolean => /\/patch-[^/]+\.yaml$/.test(f);
const kindKey = (o: Obj): string => `${String(o['apiVersion'])}/${String(o['kind'])}`;

function companionConfigs(dir: string): Map<string, Config> {
  const out = new Map<string, Config>();
  for (const { file, obj } of k8sObjs) {
    if (dirname(file) !== dir || obj['kind'] !== 'ConfigMap') continue;
    const text = get(obj, 'data', 'config.yaml');
    if (typeof text !== 'string') continue;
    out.set(String(get(obj, 'metadata', 'name')), loadConfig<Config>(configSchema, { file: `${relative(ROOT, file)} config.yaml`, text, env: {} }));
  }
  return out;
}

const portOf = (listen: string): number => Number(listen.slice(listen.lastIndexOf(':') + 1));

/** GET endpoints the operations component really serves (the probes must use these). */
function servedGetPaths(): string[] {
  const metrics = new Metrics({ collectDefault: false });
  const ops = new OpsServer({ listen: null, config: { header_timeout: 1000, request_timeout: 1000, keep_alive_timeout: 1000 }, logger: silentLogger(), metrics, readiness: () => ({ ready: true, components: {} }) });
  return ops.endpoints().filter((e) => e.startsWith('/'));
}

interface PodCtx {
  file: string;
  spec: Obj;
  /** Labels of the pod template (empty for patches). */
  labels: Obj;
}
function podSpecs(): PodCtx[] {
  return k8sObjs
    .filter(({ obj }) => obj['kind'] === 'DaemonSet')
    .map(({ file, obj }) => ({ file, spec: get(obj, 'spec', 'template', 'spec') as Obj, labels: (get(obj, 'spec', 'template', 'metadata', 'labels') as Obj | undefined) ?? {} }));
}

function checkCompanionContainer(file: string, spec: Obj, c: Obj, cfg: Config): void {
  const where = `${relative(ROOT, file)} container ${String(c['name'])}`;
  const sc = (c['securityContext'] ?? {}) as Obj;
  expect(sc['privileged'], where).not.toBe(true);
  expect(sc['allowPrivilegeEscalation'], where).toBe(false);
  expect(sc['readOnlyRootFilesystem'], where).toBe(true);
  expect(arr(get(sc, 'capabilities', 'drop')), where).toContain('ALL');
  expect(arr(get(sc, 'capabilities', 'add')), where).toEqual([]);
  if (file.endsWith('patch-grpc.yaml')) {
    // documented exception: uid 0 without any capability to reach Falco's root-owned socket
    expect(sc['runAsUser'], where).toBe(0);
  } else {
    expect(sc['runAsNonRoot'] ?? get(spec, 'securityContext', 'runAsNonRoot'), where).toBe(true);
    expect(sc['runAsUser'] ?? get(spec, 'securityContext', 'runAsUser'), where).toBe(10001);
  }
  for (const k of ['requests', 'limits']) for (const r of ['cpu', 'memory']) expect(get(c, 'resources', k, r), `${where} resources.${k}.${r}`).toBeDefined();

  // The addresses in effect: env overrides or the config file; the operations endpoints where the
  // companion puts them (opsPlacement: loopback unless ops.listen names an address).
  const envOf = (name: string): unknown => objs(c['env']).find((e) => e['name'] === name)?.['value'];
  const envListen = envOf('FALCO_COMPANION_HTTP_LISTEN');
  const envOps = envOf('FALCO_COMPANION_OPS_LISTEN');
  const listen = typeof envListen === 'string' ? envListen : cfg.http.listen;
  if (typeof envListen === 'string') expect(envListen, `${where}: env listen agrees with the ConfigMap`).toBe(cfg.http.listen);
  expect(portOf(listen), where).toBe(PORT);
  const ops = opsPlacement({ http: { listen }, ops: { listen: typeof envOps === 'string' ? envOps : cfg.ops.listen } }, cfg.http.enabled);
  const ports = objs(c['ports']);
  const served = servedGetPaths();
  expect(served).toEqual(expect.arrayContaining(['/healthz', '/readyz', '/metrics']));
  for (const [probeName, path] of [['livenessProbe', '/healthz'], ['readinessProbe', '/readyz']] as const) {
    const p = c[probeName];
    expect(isObj(p), `${where} ${probeName}`).toBe(true);
    const httpGet = get(p, 'httpGet');
    if (isObj(httpGet)) {
      expect(httpGet['path'], `${where} ${probeName}`).toBe(path);
      expect(served).toContain(httpGet['path']);
      const port = httpGet['port'];
      const num = typeof port === 'number' ? port : ports.find((x) => x['name'] === port)?.['containerPort'];
      expect(num, `${where} ${probeName} port: where the operations endpoints listen`).toBe(portOf(ops.listen));
      // the kubelet probes the pod IP: the operations listener must not be loopback-only
      expect(isLoopbackListen(ops.listen), `${where}: httpGet probes need ops.listen on a non-loopback address`).toBe(false);
    } else {
      // exec probes run in the container: docker/healthcheck.mjs finds the endpoints itself
      const cmd = arr(get(p, 'exec', 'command'));
      expect(cmd, `${where} ${probeName}`).toEqual(['node', '/app/healthcheck.mjs', path]);
      expect(served).toContain(path);
    }
  }
  // the operations endpoints are reachable from outside the pod only where the manifest opens them
  // on their own port (never on the receiver's port Falco is admitted to)
  if (!isLoopbackListen(ops.listen)) {
    expect(ops.shared, `${where}: /metrics and /detections must not share the receiver's port`).toBe(false);
    expect(portOf(ops.listen), where).toBe(OPS_PORT);
    expect(ports.find((x) => x['containerPort'] === OPS_PORT)?.['name'], `${where}: ops containerPort`).toBe('ops');
  }
  const containerPort = ports[0]?.['containerPort'];
  if (containerPort !== undefined) expect(containerPort, where).toBe(PORT);
  // state dir and /tmp are writable volumes (read-only root filesystem)
  const mounts = objs(c['volumeMounts']);
  expect(mounts.map((m) => m['mountPath']), where).toEqual(expect.arrayContaining([cfg.state_dir, '/tmp', '/etc/falco-companion']));
  expect(mounts.find((m) => m['mountPath'] === cfg.state_dir)?.['readOnly'], where).not.toBe(true);
  // the CRI socket it is configured for is mounted
  if (cfg.enrich.container.runtime === 'cri') expect(mounts.map((m) => m['mountPath']), where).toContain(cfg.enrich.container.cri_socket);
  // the host's cgroup tree and /proc the metrics source reads are mounted, read-only
  if (cfg.metrics.enabled) {
    for (const path of [cfg.metrics.cgroup_root, cfg.metrics.proc_root]) {
      const m = mounts.find((x) => x['mountPath'] === path);
      expect(m, `${where}: ${path} mounted (metrics)`).toBeDefined();
      expect(m?.['readOnly'], `${where}: ${path} read-only`).toBe(true);
    }
  }
  if (cfg.grpc.enabled || objs(c['env']).some((e) => e['name'] === 'FALCO_COMPANION_GRPC_ENABLED' && e['value'] === 'true')) {
    const addr = String(objs(c['env']).find((e) => e['name'] === 'FALCO_COMPANION_GRPC_ADDRESS')?.['value'] ?? cfg.grpc.address);
    const sockDir = dirname(addr.replace(/^unix:\/\//, ''));
    expect(mounts.map((m) => m['mountPath']), `${where}: gRPC socket dir mounted`).toContain(sockDir);
  }
}

// ---------------------------------------------------------------------------------------------
describe('every YAML file under docker/ parses', () => {
  const files = yamlFiles(DOCKER);
  it('finds the deployment files', () => {
    const rel = files.map((f) => relative(DOCKER, f));
    expect(rel).toEqual(
      expect.arrayContaining([
        'config.yaml', 'falco.yaml', 'falco-grpc.yaml', 'compose.yaml', 'compose.grpc.yaml',
        'k8s/helm-values-falco.yaml', 'k8s/daemonset/daemonset.yaml', 'k8s/daemonset/service.yaml', 'k8s/daemonset/networkpolicy.yaml',
        'k8s/daemonset/configmap.yaml', 'k8s/daemonset/serviceaccount.yaml', 'k8s/sidecar/patch-http.yaml', 'k8s/sidecar/patch-grpc.yaml',
      ]),
    );
  });
  it.each(files.map((f) => [relative(ROOT, f), f]))('%s', (_rel, file) => {
    expect(docsOf(file).length).toBeGreaterThan(0);
  });
});

describe('Kubernetes manifests', () => {
  it.each(k8sObjs.map((o) => [`${relative(ROOT, o.file)} ${kindKey(o.obj)}`, o]))('%s fits its schema', (_n, { file, obj }) => {
    const schema = isPatch(file) ? daemonSetPatchSchema : k8sSchemas[kindKey(obj)];
    expect(schema, `no schema for ${kindKey(obj)}: add one`).toBeDefined();
    if (schema) validate(schema, obj, relative(ROOT, file));
  });

  it('kustomizations reference files that exist (chart.yaml is written by post-render.sh)', () => {
    for (const { file, obj } of k8sObjs.filter((o) => o.obj['kind'] === 'Kustomization')) {
      const dir = dirname(file);
      const refs = [...arr(obj['resources']).map(String), ...objs(obj['patches']).map((p) => String(p['path']))];
      for (const r of refs) {
        if (r === 'chart.yaml') {
          expect(readFileSync(join(dir, 'post-render.sh'), 'utf8')).toContain('chart.yaml');
          continue;
        }
        expect(existsSync(join(dir, r)), `${relative(ROOT, file)} -> ${r}`).toBe(true);
      }
      // everything in the folder is used
      for (const f of readdirSync(dir).filter((n) => n.endsWith('.yaml') && n !== 'kustomization.yaml' && !n.startsWith('patch-'))) expect(refs, relative(ROOT, file)).toContain(f);
    }
  });

  it('companion containers: never privileged, non-root, read-only root, resources, probes on 2804 paths that exist', () => {
    let seen = 0;
    for (const { file, spec } of podSpecs()) {
      const cfgs = companionConfigs(dirname(file));
      const containers = objs(spec['containers']).filter((c) => c['name'] === 'falco-companion');
      expect(containers.length, relative(ROOT, file)).toBe(1);
      for (const c of containers) {
        const cfgMount = objs(c['volumeMounts']).find((m) => m['mountPath'] === '/etc/falco-companion');
        const cmName = String(get(objs(spec['volumes']).find((v) => v['name'] === cfgMount?.['name']), 'configMap', 'name'));
        const cfg = cfgs.get(cmName);
        expect(cfg, `${relative(ROOT, file)}: config volume -> ConfigMap ${cmName} in the same folder`).toBeDefined();
        if (cfg) checkCompanionContainer(file, spec, c, cfg);
        seen++;
      }
    }
    expect(seen).toBe(3);
  });

  it('every volumeMount names a volume of the pod, runtime sockets are read-only typed Socket hostPaths', () => {
    for (const { file, spec } of podSpecs()) {
      const vols = new Map(objs(spec['volumes']).map((v) => [String(v['name']), v]));
      for (const c of [...objs(spec['containers']), ...objs(spec['initContainers'])]) {
        for (const m of objs(c['volumeMounts'])) {
          const v = vols.get(String(m['name']));
          expect(v, `${relative(ROOT, file)} ${String(c['name'])} mounts ${String(m['name'])}`).toBeDefined();
          const hp = get(v, 'hostPath', 'path');
          if (typeof hp === 'string' && hp.endsWith('.sock')) {
            expect(m['readOnly'], `${relative(ROOT, file)} ${String(c['name'])}: ${hp} must be mounted read-only`).toBe(true);
            expect(get(v, 'hostPath', 'type'), hp).toBe('Socket');
          }
        }
      }
      // and every volume is used
      const used = new Set([...objs(spec['containers']), ...objs(spec['initContainers'])].flatMap((c) => objs(c['volumeMounts']).map((m) => String(m['name']))));
      for (const name of vols.keys()) expect(used.has(name), `${relative(ROOT, file)}: volume ${name} unused`).toBe(true);
    }
  });

  it('init containers are never privileged and add at most CHOWN', () => {
    for (const { file, spec } of podSpecs()) {
      for (const c of objs(spec['initContainers'])) {
        expect(get(c, 'securityContext', 'privileged'), relative(ROOT, file)).not.toBe(true);
        expect(get(c, 'securityContext', 'allowPrivilegeEscalation')).toBe(false);
        expect(arr(get(c, 'securityContext', 'capabilities', 'drop'))).toContain('ALL');
        for (const cap of arr(get(c, 'securityContext', 'capabilities', 'add'))) expect(cap).toBe('CHOWN');
      }
    }
  });

  it('DaemonSet pattern: node-local Service, rolling updates one node at a time, no PodDisruptionBudget', () => {
    const dir = join(K8S, 'daemonset');
    const ds = k8sObjs.find((o) => dirname(o.file) === dir && o.obj['kind'] === 'DaemonSet')?.obj;
    const svc = k8sObjs.find((o) => dirname(o.file) === dir && o.obj['kind'] === 'Service')?.obj;
    expect(ds && svc).toBeTruthy();
    expect(get(svc, 'spec', 'internalTrafficPolicy')).toBe('Local');
    const podLabels = get(ds, 'spec', 'template', 'metadata', 'labels') as Obj;
    const sel = get(svc, 'spec', 'selector') as Obj;
    for (const [k, v] of Object.entries(sel)) expect(podLabels[k], `Service selector ${k}`).toBe(v);
    for (const [k, v] of Object.entries(get(ds, 'spec', 'selector', 'matchLabels') as Obj)) expect(podLabels[k]).toBe(v);
    // two ports: the receiver (Falco) and the operations endpoints (probes, scraper, emulation --verify)
    const companion = objs(get(ds, 'spec', 'template', 'spec', 'containers')).find((c) => c['name'] === 'falco-companion');
    const svcPorts = objs(get(svc, 'spec', 'ports'));
    expect(svcPorts.map((p) => p['port'])).toEqual([PORT, OPS_PORT]);
    for (const port of svcPorts) {
      const target = port['targetPort'];
      const targetNum = typeof target === 'number' ? target : objs(companion?.['ports']).find((p) => p['name'] === target)?.['containerPort'];
      expect(targetNum, `Service port ${String(port['name'])}`).toBe(port['port']);
    }
    // Prometheus scrapes the operations port
    expect(get(ds, 'spec', 'template', 'metadata', 'annotations', 'prometheus.io/port')).toBe(String(OPS_PORT));
    expect(get(ds, 'spec', 'updateStrategy', 'rollingUpdate', 'maxUnavailable')).toBe(1);
    expect(k8sObjs.some((o) => o.obj['kind'] === 'PodDisruptionBudget')).toBe(false);
    expect(readFileSync(join(dir, 'daemonset.yaml'), 'utf8')).toMatch(/No PodDisruptionBudget/);
    // the ServiceAccount used exists, and needs no token
    const sa = k8sObjs.find((o) => dirname(o.file) === dir && o.obj['kind'] === 'ServiceAccount')?.obj;
    expect(get(sa, 'metadata', 'name')).toBe(get(ds, 'spec', 'template', 'spec', 'serviceAccountName'));
    expect(get(ds, 'spec', 'template', 'spec', 'automountServiceAccountToken')).toBe(false);
    // grace period longer than the configured drain deadline
    const cfg = companionConfigs(dir).get('falco-companion');
    expect(Number(get(ds, 'spec', 'template', 'spec', 'terminationGracePeriodSeconds')) * 1000).toBeGreaterThan(cfg?.shutdown.deadline ?? Infinity);
  });

  it('NetworkPolicy selects the companion pods, admits Falco pods to the receiver (2804) only and the scraper namespace to the operations port (2805) only', () => {
    const dir = join(K8S, 'daemonset');
    const np = k8sObjs.find((o) => dirname(o.file) === dir && o.obj['kind'] === 'NetworkPolicy')?.obj;
    const ds = k8sObjs.find((o) => dirname(o.file) === dir && o.obj['kind'] === 'DaemonSet')?.obj;
    const podLabels = get(ds, 'spec', 'template', 'metadata', 'labels') as Obj;
    const match = get(np, 'spec', 'podSelector', 'matchLabels') as Obj;
    expect(Object.keys(match).length).toBeGreaterThan(0);
    for (const [k, v] of Object.entries(match)) expect(podLabels[k]).toBe(v);
    expect(arr(get(np, 'spec', 'policyTypes'))).toContain('Ingress');
    const rules = objs(get(np, 'spec', 'ingress'));
    expect(rules.length).toBeGreaterThan(0);
    for (const r of rules) {
      expect(objs(r['from']).length, 'an ingress rule without from admits everyone').toBeGreaterThan(0);
      for (const f of objs(r['from'])) expect(f['ipBlock']).toBeUndefined();
      const isFalco = objs(r['from']).some((f) => get(f, 'podSelector', 'matchLabels', 'app.kubernetes.io/name') === 'falco');
      // Falco may post alerts and read nothing; whoever reads /metrics may post nothing
      expect(objs(r['ports']).map((p) => p['port'])).toEqual([isFalco ? PORT : OPS_PORT]);
    }
    const falcoRule = rules.find((r) => objs(r['from']).some((f) => get(f, 'podSelector', 'matchLabels', 'app.kubernetes.io/name') === 'falco'));
    expect(falcoRule).toBeDefined();
    expect(rules.some((r) => objs(r['ports']).some((p) => p['port'] === OPS_PORT))).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
/**
 * Least privilege, for every container of every workload we ship (docs/security.md, "Deploy with
 * least privilege"): non-root, read-only root filesystem, no privilege escalation, every
 * capability dropped, RuntimeDefault seccomp, no host namespaces, host paths read-only except the
 * state directory. The exceptions are listed here with their reason and must be explained in the
 * manifest too; anything else that wants root or a capability fails.
 */
interface Exception {
  /** File under docker/k8s and container name. */
  readonly file: string;
  readonly container: string;
  /** uid 0 allowed. */
  readonly root: boolean;
  /** Capabilities it may add (emulation Jobs: exactly what the scenario declares, checked above). */
  readonly add: readonly string[] | 'scenario';
  /** A phrase the manifest must contain (the explanation next to it). */
  readonly explained: RegExp;
}
const EXCEPTIONS: readonly Exception[] = [
  { file: 'daemonset/daemonset.yaml', container: 'state-owner', root: true, add: ['CHOWN'], explained: /only step that runs as root, with CAP_CHOWN alone/ },
  { file: 'sidecar/patch-grpc.yaml', container: 'falco-companion', root: true, add: [], explained: /runs as uid 0 - with every capability\s+(#\s+)?dropped/ },
  { file: 'emulate-job.yaml', container: 'emulate', root: true, add: 'scenario', explained: /securityContext per scenario \(exactly what `falco-companion emulate list` declares/ },
];

interface AnyPod {
  readonly file: string;
  readonly kind: string;
  readonly spec: Obj;
}
function allPodSpecs(): AnyPod[] {
  return k8sObjs
    .filter(({ obj }) => ['DaemonSet', 'Deployment', 'Job'].includes(String(obj['kind'])))
    .map(({ file, obj }) => ({ file, kind: String(obj['kind']), spec: get(obj, 'spec', 'template', 'spec') as Obj }));
}

describe('least privilege: every container we ship', () => {
  const pods = allPodSpecs();
  const containersOf = (spec: Obj): Obj[] => [...objs(spec['initContainers']), ...objs(spec['containers'])];
  const ours = (c: Obj): boolean => c['securityContext'] !== undefined || /^(falco-companion|redis)/.test(String(c['image'] ?? ''));

  it('finds the workloads (DaemonSet, sidecar patches, Redis, emulation Jobs)', () => {
    const rel = [...new Set(pods.map((p) => relative(K8S, p.file)))];
    expect(rel).toEqual(expect.arrayContaining(['daemonset/daemonset.yaml', 'sidecar/patch-http.yaml', 'sidecar/patch-grpc.yaml', 'redis/deployment.yaml', 'emulate-job.yaml']));
  });

  it.each(pods.map((p) => [`${relative(ROOT, p.file)} ${p.kind}`, p]))('%s: no host namespaces, seccomp RuntimeDefault, host paths read-only but the state directory', (_n, { file, spec }) => {
    const where = relative(ROOT, file);
    for (const k of ['hostPID', 'hostNetwork', 'hostIPC', 'shareProcessNamespace']) expect(spec[k], `${where}: ${k}`).toBeUndefined();
    const vols = new Map(objs(spec['volumes']).map((v) => [String(v['name']), v]));
    for (const c of containersOf(spec).filter(ours)) {
      const cw = `${where} ${String(c['name'])}`;
      const seccomp = get(c, 'securityContext', 'seccompProfile', 'type') ?? get(spec, 'securityContext', 'seccompProfile', 'type');
      expect(seccomp, `${cw}: seccompProfile`).toBe('RuntimeDefault');
      for (const m of objs(c['volumeMounts'])) {
        const hp = get(vols.get(String(m['name'])), 'hostPath', 'path');
        if (typeof hp !== 'string') continue;
        // the state directory is the one writable host path (spool and learned state)
        if (hp === '/var/lib/falco-companion') expect(m['mountPath'], cw).toBe('/var/lib/falco-companion');
        else expect(m['readOnly'], `${cw}: host path ${hp} must be mounted read-only`).toBe(true);
      }
    }
  });

  it.each(pods.flatMap((p) => containersOf(p.spec).filter(ours).map((c) => [`${relative(ROOT, p.file)} ${String(c['name'])}`, { ...p, c }] as const)))(
    '%s: non-root, read-only root, no escalation, capabilities drop ALL (or a listed exception)',
    (_n, { file, c }) => {
      const where = `${relative(ROOT, file)} ${String(c['name'])}`;
      const sc = (c['securityContext'] ?? {}) as Obj;
      expect(sc['privileged'], where).not.toBe(true);
      expect(sc['allowPrivilegeEscalation'], where).toBe(false);
      expect(sc['readOnlyRootFilesystem'], where).toBe(true);
      expect(arr(get(sc, 'capabilities', 'drop')), where).toEqual(['ALL']);
      const ex = EXCEPTIONS.find((e) => relative(K8S, file) === e.file && e.container === c['name']);
      const add = arr(get(sc, 'capabilities', 'add')).map(String);
      if (!ex) {
        expect(sc['runAsNonRoot'], `${where}: runAsNonRoot`).toBe(true);
        expect(Number(sc['runAsUser'] ?? -1), `${where}: a non-zero runAsUser`).toBeGreaterThan(0);
        expect(add, `${where}: no capability added`).toEqual([]);
        return;
      }
      expect(readFileSync(file, 'utf8'), `${where}: the exception is explained in the manifest`).toMatch(ex.explained);
      if (ex.add !== 'scenario') expect(add, where).toEqual(ex.add);
      if (ex.root && sc['runAsUser'] === 0) expect(sc['runAsNonRoot'], where).toBe(false);
    },
  );

  it('the exception list holds only what the manifests need (a stale entry fails)', () => {
    for (const e of EXCEPTIONS) {
      const hit = pods.some((p) => relative(K8S, p.file) === e.file && containersOf(p.spec).some((c) => c['name'] === e.container && (get(c, 'securityContext', 'runAsUser') === 0 || arr(get(c, 'securityContext', 'capabilities', 'add')).length > 0)));
      expect(hit, `${e.file} ${e.container}`).toBe(true);
    }
  });

  it('the Helm values\' commented native-sidecar example carries the same hardening', () => {
    const text = readFileSync(join(K8S, 'helm-values-falco.yaml'), 'utf8');
    const sc = /securityContext: \{([^}]*)\}/.exec(text.replace(/\n#\s+/g, ' '))?.[1] ?? '';
    for (const k of ['runAsNonRoot: true', 'readOnlyRootFilesystem: true', 'allowPrivilegeEscalation: false', 'capabilities: {drop: [ALL]']) expect(sc, k).toContain(k);
  });

  it('compose: the companion is read-only, without capabilities or new privileges; only its operations port is published, on the host loopback', () => {
    for (const name of ['compose.yaml', 'compose.grpc.yaml']) {
      const comp = get(one(join(DOCKER, name)), 'services', 'falco-companion') as Obj;
      expect(comp['read_only'], name).toBe(true);
      expect(arr(comp['cap_drop']), name).toEqual(['ALL']);
      expect(comp['cap_add'], name).toBeUndefined();
      expect(comp['privileged'], name).toBeUndefined();
      expect(arr(comp['security_opt']), name).toContain('no-new-privileges:true');
      for (const k of ['pid', 'network_mode', 'ipc']) expect(comp[k], `${name}: ${k}`).toBeUndefined();
      const env = comp['environment'] as Record<string, string>;
      const cfg = loadConfig<Config>(configSchema, { file: join(DOCKER, 'config.yaml'), env });
      const ops = opsPlacement(cfg, cfg.http.enabled);
      expect(ops.shared, name).toBe(false);
      const published = arr(comp['ports']).map(String);
      expect(published, name).toEqual([`127.0.0.1:${portOf(ops.listen)}:${portOf(ops.listen)}`]);
    }
  });

  it('the Docker client only reads: GET, on the paths docs/security.md lists for a socket proxy', () => {
    const src = readFileSync(join(ROOT, 'src/enrich/docker-client.ts'), 'utf8');
    const requests = [...src.matchAll(/http\.request\(\{([^}]*)\}/g)].map((m) => m[1] ?? '');
    expect(requests.length).toBeGreaterThanOrEqual(2);
    for (const r of requests) expect(r, 'every request names its method: GET').toMatch(/method: 'GET'/);
    expect([...src.matchAll(/method: '([A-Z]+)'/g)].map((m) => m[1])).toEqual(requests.map(() => 'GET'));
    const paths = new Set(
      [...src.matchAll(/(?:getJson<[^>]*>|stream)\((`[^`]*`|'[^']*')/g)].map((m) =>
        (m[1] ?? '')
          .slice(1, -1)
          .replace(/^\$\{(?:await this\.prefix\([a-z.]+\)|prefix)\}/, '')
          .replace(/\$\{[^}]+\}/g, '{x}')
          .replace(/\?.*$/, ''),
      ),
    );
    const doc = readFileSync(join(ROOT, 'docs/security.md'), 'utf8');
    const listed = doc.slice(doc.indexOf('### The container runtime socket'), doc.indexOf('### The exceptions'));
    const documented = new Set([...listed.matchAll(/`(\/[a-z/{}]+)`/g)].map((m) => (m[1] ?? '').replace(/\{[a-z]+\}/g, '{x}')));
    expect(paths.size).toBeGreaterThanOrEqual(7);
    for (const p of paths) expect(documented, `${p} used by the Docker client but not listed in docs/security.md`).toContain(p);
  });

  it('Dockerfile: a numeric non-root USER, no setuid/setgid program left in the runtime image', () => {
    const df = readFileSync(join(DOCKER, 'Dockerfile'), 'utf8');
    const runtime = df.slice(df.search(/^FROM \$\{BASE_IMAGE\}$/m));
    expect(runtime).toMatch(/^USER 10001:10001$/m);
    expect(runtime).toMatch(/find \/ -xdev -perm \/6000 -type f -exec chmod a-s \{\} \+/);
  });
});

// ---------------------------------------------------------------------------------------------
function falcoSchemaValidator(extraGrpc: boolean): ((v: unknown) => string[]) | null {
  if (!existsSync(FALCO_SCHEMA)) return null;
  const schema = JSON.parse(readFileSync(FALCO_SCHEMA, 'utf8')) as { definitions: Record<string, { properties: Obj }> };
  const fc = schema.definitions['FalcoConfig'];
  if (extraGrpc && fc) {
    // Falco <= 0.43 keys (removed from the 0.44 schema with the gRPC output).
    fc.properties['grpc'] = { type: 'object', additionalProperties: false, properties: { enabled: { type: 'boolean' }, bind_address: { type: 'string' }, threadiness: { type: 'integer' } } };
    fc.properties['grpc_output'] = { type: 'object', additionalProperties: false, properties: { enabled: { type: 'boolean' } } };
  }
  const a = new Ajv({ allErrors: true, strict: false, validateFormats: false });
  const draft6 = JSON.parse(readFileSync(join(ROOT, 'node_modules/ajv/dist/refs/json-schema-draft-06.json'), 'utf8')) as AnySchema;
  a.addMetaSchema(draft6 as Exclude<AnySchema, boolean>);
  const v = a.compile(schema);
  return (value) => (v(value) ? [] : (v.errors ?? []).map((e) => `${e.instancePath} ${e.message ?? ''} ${JSON.stringify(e.params)}`));
}

const skipFalco = existsSync(FALCO_SCHEMA) ? null : `${FALCO_SCHEMA} absent (../shared/falco-reference): Falco schema checks skipped`;
if (skipFalco) process.stderr.write(`test/deploy/manifests.test.ts: ${skipFalco}\n`);

const dockerCfg = (): Config => loadConfig<Config>(configSchema, { file: join(DOCKER, 'config.yaml'), env: {} });

describe('Falco configuration overrides', () => {
  it.skipIf(skipFalco !== null)('falco.yaml (0.44) validates against Falco’s config schema, and an invalid key is caught', () => {
    const check = falcoSchemaValidator(false);
    const v = one(join(DOCKER, 'falco.yaml'));
    expect(check?.(v)).toEqual([]);
    expect(check?.({ ...v, grpc_output: { enabled: true } }).length).toBeGreaterThan(0);
    expect(check?.({ ...v, http_output: { ...(v['http_output'] as Obj), url: 42 } }).length).toBeGreaterThan(0);
  });

  it.skipIf(skipFalco !== null)('falco-grpc.yaml validates against the schema plus the 0.43 grpc keys', () => {
    expect(falcoSchemaValidator(true)?.(one(join(DOCKER, 'falco-grpc.yaml')))).toEqual([]);
  });

  it.skipIf(skipFalco !== null)('the Helm values’ falco block validates against Falco’s config schema', () => {
    const values = one(join(K8S, 'helm-values-falco.yaml'));
    expect(falcoSchemaValidator(false)?.(values['falco'])).toEqual([]);
  });

  it('json_output on and http_output pointed at the companion’s port; rules files exist in falco-rules/', () => {
    const cfg = dockerCfg();
    const f = one(join(DOCKER, 'falco.yaml'));
    expect(f['json_output']).toBe(true);
    expect(get(f, 'http_output', 'enabled')).toBe(true);
    const url = new URL(String(get(f, 'http_output', 'url')));
    expect(url.hostname).toBe('falco-companion');
    expect(Number(url.port)).toBe(portOf(cfg.http.listen));
    const g = one(join(DOCKER, 'falco-grpc.yaml'));
    expect(g['json_output']).toBe(true);
    expect(get(g, 'grpc', 'enabled')).toBe(true);
    expect(get(g, 'grpc_output', 'enabled')).toBe(true);
    expect(String(get(g, 'grpc', 'bind_address'))).toMatch(/^unix:\/\//);
    for (const file of [f, g]) {
      const rules = arr(file['rules_files']).map(String);
      expect(rules.length).toBeGreaterThan(0);
      for (const r of rules) {
        expect(r.startsWith('/etc/falco/falco-companion/'), r).toBe(true);
        expect(existsSync(join(ROOT, 'falco-rules', r.slice('/etc/falco/falco-companion/'.length))), r).toBe(true);
      }
    }
  });

  it('Helm values: http_output to the node-local Service on 2804, json output, the companion rules file', () => {
    const values = one(join(K8S, 'helm-values-falco.yaml'));
    expect(get(values, 'falco', 'json_output')).toBe(true);
    expect(get(values, 'falco', 'http_output', 'enabled')).toBe(true);
    const url = new URL(String(get(values, 'falco', 'http_output', 'url')));
    const svc = k8sObjs.find((o) => o.obj['kind'] === 'Service')?.obj;
    expect(url.hostname.split('.').slice(0, 2)).toEqual([get(svc, 'metadata', 'name'), get(svc, 'metadata', 'namespace')]);
    expect(Number(url.port)).toBe(PORT);
    expect(Object.keys(get(values, 'customRules') as Obj)).toContain('falco-companion_rules.yaml');
    expect(existsSync(join(ROOT, 'falco-rules/falco-companion_rules.yaml'))).toBe(true);
    expect(get(values, 'driver', 'kind')).toBe('modern_ebpf');
    // the companion's sidekick URL matches the chart's Falcosidekick Service
    for (const [name, cfg] of companionConfigs(join(K8S, 'daemonset'))) expect(cfg.sinks.falcosidekick.url, name).toMatch(/^http:\/\/falco-falcosidekick\.falco\.svc(\.cluster\.local)?:2801\/$/);
  });
});

// ---------------------------------------------------------------------------------------------
describe('companion config files validate with our own schema', () => {
  it('docker/config.yaml: listens on 0.0.0.0:2804, state in the image VOLUME, drain below docker stop’s 10 s', () => {
    const cfg = dockerCfg();
    expect(cfg.http.listen).toBe(`0.0.0.0:${PORT}`);
    expect(cfg.state_dir).toBe('/var/lib/falco-companion');
    expect(cfg.shutdown.deadline).toBeLessThan(10_000);
    const df = readFileSync(join(DOCKER, 'Dockerfile'), 'utf8');
    expect(df).toContain(`VOLUME ["${cfg.state_dir}"]`);
    expect(df).toContain(`EXPOSE ${PORT}`);
    // the image's operations endpoints stay on the container's loopback, POST /test off
    const ops = opsPlacement(cfg, cfg.http.enabled);
    expect(isLoopbackListen(ops.listen), ops.listen).toBe(true);
    expect(cfg.ops.test_token).toBeNull();
  });

  it('an invalid value in a config file is reported (the check can fail)', () => {
    const text = readFileSync(join(DOCKER, 'config.yaml'), 'utf8').replace('listen: 0.0.0.0:2804', 'listen: nowhere');
    expect(() => loadConfig<Config>(configSchema, { file: 'docker/config.yaml', text, env: {} })).toThrow(/must be HOST:PORT/);
  });

  it('every FALCO_COMPANION_* variable in compose files and manifests is a real setting', () => {
    const files = [...yamlFiles(DOCKER), join(DOCKER, 'Dockerfile')];
    const names = new Set(files.flatMap((f) => [...readFileSync(f, 'utf8').matchAll(/\bFALCO_COMPANION_[A-Z0-9_]+/g)].map((m) => m[0])));
    expect(names.size).toBeGreaterThan(3);
    for (const n of names) {
      // valid: loadConfig accepts a plausible value for it
      const sample = n.endsWith('_ENABLED') ? 'true' : n.endsWith('_BACKEND') ? 'redis' : n.endsWith('_LISTEN') ? '127.0.0.1:2804' : n.endsWith('_URL') ? 'http://x:2801/' : n.endsWith('_RUNTIME') ? 'docker' : n.endsWith('_ADDRESS') ? 'unix:///x/other.sock' : n.endsWith('_CIDRS') ? '192.168.10.11' : n.endsWith('_TOKEN') ? 'x'.repeat(32) : '/tmp/x';
      const before = loadConfig<Config>(configSchema, { file: null, env: {} });
      const after = loadConfig<Config>(configSchema, { file: null, env: { [n]: sample } });
      expect(JSON.stringify(after), `${n} changes nothing: not a setting`).not.toBe(JSON.stringify(before));
    }
  });
});

// ---------------------------------------------------------------------------------------------
describe('compose files', () => {
  for (const name of ['compose.yaml', 'compose.grpc.yaml']) {
    it(`${name}: services, files it references, companion hardening, Falco wiring`, () => {
      const c = one(join(DOCKER, name));
      const services = c['services'] as Obj;
      expect(Object.keys(services)).toEqual(expect.arrayContaining(['falco', 'falco-companion', 'falcosidekick', 'falcosidekick-ui', 'redis']));
      const namedVolumes = new Set(Object.keys((c['volumes'] as Obj | undefined) ?? {}));
      for (const [svcName, svc] of Object.entries(services)) {
        for (const dep of arr(get(svc, 'depends_on'))) expect(Object.keys(services), `${svcName} depends_on`).toContain(dep);
        for (const v of arr(get(svc, 'volumes')).map(String)) {
          const [src = '', target = ''] = v.split(':');
          expect(target.startsWith('/'), v).toBe(true);
          if (src.startsWith('.')) expect(existsSync(resolve(DOCKER, src)), `${name} ${svcName}: ${src}`).toBe(true);
          else if (!src.startsWith('/')) expect(namedVolumes.has(src), `${name} ${svcName}: named volume ${src}`).toBe(true);
        }
      }
      const comp = services['falco-companion'] as Obj;
      expect(existsSync(resolve(DOCKER, String(get(comp, 'build', 'context')), String(get(comp, 'build', 'dockerfile'))))).toBe(true);
      expect(comp['privileged']).not.toBe(true);
      expect(comp['read_only']).toBe(true);
      expect(arr(comp['cap_drop'])).toContain('ALL');
      expect(arr(comp['cap_add'])).toEqual([]);
      expect(arr(comp['tmpfs'])).toContain('/tmp');
      const env = comp['environment'] as Obj;
      const state = String(env['FALCO_COMPANION_STATE_DIR'] ?? dockerCfg().state_dir);
      expect(arr(comp['volumes']).map(String).some((v) => v.split(':')[1] === state), `${name}: state dir ${state} on a volume`).toBe(true);
      const sk = new URL(String(env['FALCO_COMPANION_SINKS_FALCOSIDEKICK_URL']));
      expect(Object.keys(services)).toContain(sk.hostname);
      expect(sk.port).toBe('2801');
      expect(arr(comp['volumes']).map(String).filter((v) => v.includes('.sock')).every((v) => v.endsWith(':ro'))).toBe(true);
      // Falco: override merged from config.d, our rules mounted, the override file is the one for this stack
      const falco = services['falco'] as Obj;
      const fv = arr(falco['volumes']).map(String);
      const override = fv.find((v) => v.split(':')[1]?.startsWith('/etc/falco/config.d/'));
      expect(override, `${name}: falco override mounted into /etc/falco/config.d`).toBeDefined();
      expect(fv.some((v) => v.startsWith('../falco-rules:/etc/falco/falco-companion'))).toBe(true);
      const overrideFile = one(resolve(DOCKER, String(override?.split(':')[0])));
      if (name === 'compose.yaml') {
        expect(String(falco['image'])).toMatch(/^falcosecurity\/falco:0\.44\./);
        const url = new URL(String(get(overrideFile, 'http_output', 'url')));
        expect(url.hostname).toBe('falco-companion');
        expect(url.port).toBe(String(portOf(dockerCfg().http.listen)));
      } else {
        expect(String(falco['image'])).toMatch(/^falcosecurity\/falco:0\.(2\d|3\d|4[0-3])\./);
        const sock = String(get(overrideFile, 'grpc', 'bind_address')).replace(/^unix:\/\//, '');
        expect(env['FALCO_COMPANION_GRPC_ADDRESS']).toBe(`unix://${sock}`);
        expect(env['FALCO_COMPANION_GRPC_ENABLED']).toBe('true');
        // the socket directory is the same named volume in both containers
        const vol = (svc: Obj): string | undefined => arr(svc['volumes']).map(String).find((v) => v.split(':')[1] === dirname(sock))?.split(':')[0];
        expect(vol(falco)).toBeDefined();
        expect(vol(falco)).toBe(vol(comp));
        expect(namedVolumes.has(String(vol(falco)))).toBe(true);
      }
      expect(Number(String(comp['stop_grace_period']).replace(/s$/, '')) * 1000).toBeGreaterThan(dockerCfg().shutdown.deadline);
    });
  }
});

describe('Dockerfile and build context', () => {
  const df = readFileSync(join(DOCKER, 'Dockerfile'), 'utf8');
  it('multi-stage with overridable bases, non-root, healthcheck, exec-form entrypoint', () => {
    expect(df).toMatch(/^ARG BUILD_IMAGE=node:20-bookworm$/m);
    expect(df).toMatch(/^ARG BASE_IMAGE=node:20-bookworm-slim$/m);
    expect(df).toMatch(/^FROM \$\{BUILD_IMAGE\} AS build$/m);
    expect(df).toMatch(/^FROM \$\{BASE_IMAGE\}$/m);
    expect(df).toMatch(/^USER 10001:10001$/m);
    expect(df).toMatch(/^HEALTHCHECK .*\["node", "\/app\/healthcheck\.mjs"\]$/m);
    expect(df).toMatch(/^ENTRYPOINT \["node", "\/app\/dist\/src\/cli\.js"\]$/m);
    expect(df).toMatch(/^CMD \["run", "--config", "\/etc\/falco-companion\/config\.yaml"\]$/m);
    expect(df).toMatch(/npm prune --omit=dev/);
  });
  it('everything the Dockerfile copies from the context is allowed by .dockerignore', () => {
    const ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    expect(ignore[0]).toBe('*');
    const allowed = ignore.filter((l) => l.startsWith('!')).map((l) => l.slice(1).replace(/\/$/, ''));
    const copies = [...df.matchAll(/^COPY (?!--from)(.+)$/gm)].flatMap((m) => (m[1] ?? '').split(/\s+/).slice(0, -1)).filter((s) => s !== '.');
    expect(copies.length).toBeGreaterThan(1);
    for (const src of copies) {
      expect(existsSync(join(ROOT, src)), src).toBe(true);
      expect(allowed, `${src} must be allowed in .dockerignore`).toContain(src);
    }
    for (const needed of ['src', 'proto', 'scripts', 'tsconfig.json', 'falco-rules']) expect(allowed).toContain(needed);
    for (const never of ['node_modules', 'dist', '.git', 'test']) expect(allowed).not.toContain(never);
  });
  it('Kubernetes manifests use the image version of package.json', () => {
    const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    for (const { file, spec } of podSpecs()) {
      for (const c of [...objs(spec['containers']), ...objs(spec['initContainers'])].filter((x) => String(x['image'] ?? '').startsWith('falco-companion'))) {
        expect(c['image'], relative(ROOT, file)).toBe(`falco-companion:${version}`);
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
describe('emulation Jobs (docker/k8s/emulate-job.yaml)', () => {
  const file = join(K8S, 'emulate-job.yaml');
  const objsIn = k8sObjs.filter((o) => o.file === file).map((o) => o.obj);
  const jobs = objsIn.filter((o) => o['kind'] === 'Job');
  const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

  it('has Jobs, the namespace they run in, and a NetworkPolicy that lets them reach the companion’s ops port', () => {
    expect(jobs.length).toBeGreaterThanOrEqual(2);
    const ns = objsIn.find((o) => o['kind'] === 'Namespace');
    for (const j of jobs) expect(get(j, 'metadata', 'namespace')).toBe(get(ns, 'metadata', 'name'));
    const np = objsIn.find((o) => o['kind'] === 'NetworkPolicy');
    const ds = k8sObjs.find((o) => o.obj['kind'] === 'DaemonSet' && dirname(o.file) === join(K8S, 'daemonset'))?.obj;
    expect(get(np, 'metadata', 'namespace')).toBe(get(ds, 'metadata', 'namespace'));
    const dsLabels = get(ds, 'spec', 'template', 'metadata', 'labels') as Obj;
    for (const [k, v] of Object.entries(get(np, 'spec', 'podSelector', 'matchLabels') as Obj)) expect(dsLabels[k]).toBe(v);
    const from = objs(objs(get(np, 'spec', 'ingress'))[0]?.['from'])[0];
    expect(get(from, 'namespaceSelector', 'matchLabels', 'kubernetes.io/metadata.name')).toBe(get(ns, 'metadata', 'name'));
    for (const j of jobs) {
      const podLabels = get(j, 'spec', 'template', 'metadata', 'labels') as Obj;
      for (const [k, v] of Object.entries(get(from, 'podSelector', 'matchLabels') as Obj)) expect(podLabels[k], String(get(j, 'metadata', 'name'))).toBe(v);
    }
    // GET /detections on the operations port; never the receiver (an emulation pod cannot post alerts)
    expect(objs(objs(get(np, 'spec', 'ingress'))[0]?.['ports']).map((p) => p['port'])).toEqual([OPS_PORT]);
  });

  it('each Job runs a declared scenario with exactly its capabilities, never privileged, bounded, verified against the node-local companion', () => {
    const svc = k8sObjs.find((o) => o.obj['kind'] === 'Service' && dirname(o.file) === join(K8S, 'daemonset'))?.obj;
    for (const j of jobs) {
      const where = String(get(j, 'metadata', 'name'));
      const spec = get(j, 'spec', 'template', 'spec') as Obj;
      expect(get(j, 'spec', 'backoffLimit'), where).toBe(0);
      expect(spec['restartPolicy'], where).toBe('Never');
      expect(spec['automountServiceAccountToken'], where).toBe(false);
      const [c, ...more] = objs(spec['containers']);
      expect(more, where).toEqual([]);
      expect(c?.['image'], where).toBe(`falco-companion-emulate:${version}`);
      const args = arr(c?.['args']).map(String);
      expect(args.slice(0, 2), where).toEqual(['emulate', 'run']);
      const s = scenarioByName(args[2] ?? '');
      expect(s, `${where}: scenario ${args[2]}`).toBeDefined();
      if (!s) continue;
      expect(s.where, where).toBe('container');
      expect(Number(get(j, 'spec', 'activeDeadlineSeconds')), where).toBeGreaterThan(s.timeoutS + 60);
      const sc = (c?.['securityContext'] ?? {}) as Obj;
      expect(sc['privileged'], where).toBe(false);
      expect(sc['allowPrivilegeEscalation'], where).toBe(false);
      expect(arr(get(sc, 'capabilities', 'drop')), where).toEqual(['ALL']);
      expect(arr(get(sc, 'capabilities', 'add')).map(String).sort(), where).toEqual([...s.capabilities].sort());
      expect(sc['runAsUser'], where).toBe(s.needs.includes('root') ? 0 : 10001);
      for (const [k, v] of Object.entries(s.labels ?? {})) expect(get(j, 'spec', 'template', 'metadata', 'labels', k), `${where} label ${k}`).toBe(v);
      // writable places on a read-only root: /tmp (exec-capable tmpfs when the scenario drops into it), /run, the named copies
      const vols = new Map(objs(spec['volumes']).map((v) => [String(v['name']), v]));
      const mounts = new Map(objs(c?.['volumeMounts']).map((m) => [String(m['mountPath']), vols.get(String(m['name']))]));
      if (sc['readOnlyRootFilesystem'] === true) for (const p of ['/tmp', '/run', '/var/lib/falco-companion-emulate']) expect(mounts.get(p), `${where}: ${p} mounted`).toBeDefined();
      if (s.needs.includes('tmpfs-exec')) expect(get(mounts.get('/tmp'), 'emptyDir', 'medium'), where).toBe('Memory');
      const verify = args[args.indexOf('--verify') + 1];
      expect(args.includes('--verify'), where).toBe(true);
      const u = new URL(String(verify));
      expect(u.hostname.split('.').slice(0, 2), where).toEqual([get(svc, 'metadata', 'name'), get(svc, 'metadata', 'namespace')]);
      expect(Number(u.port), where).toBe(OPS_PORT);
      for (const k of ['requests', 'limits']) for (const r of ['cpu', 'memory']) expect(get(c, 'resources', k, r), `${where} resources.${k}.${r}`).toBeDefined();
    }
  });

  it('docker/emulate/Dockerfile: multi-stage, compiles the helper static, ships iptables and iproute2, non-root by default, copies only allowed context', () => {
    const df = readFileSync(join(DOCKER, 'emulate/Dockerfile'), 'utf8');
    expect(df).toMatch(/^FROM \$\{BUILD_IMAGE\} AS build$/m);
    expect(df).toMatch(/^FROM \$\{BASE_IMAGE\}$/m);
    expect(df).toMatch(/cc -O2 -static .*native\/fc-emulate\.c/);
    expect(df).toMatch(/apt-get install -y --no-install-recommends iptables iproute2/);
    expect(df).toMatch(/^USER 10001:10001$/m);
    expect(df).toMatch(/^ENTRYPOINT \["node", "\/app\/dist\/src\/cli\.js"\]$/m);
    expect(df).toMatch(/^CMD \["emulate", "list"\]$/m);
    expect(df).toContain('FC_EMULATE_HELPER=/usr/local/lib/falco-companion/fc-emulate');
    const ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim());
    expect(ignore).toContain('!native/');
    expect(ignore).toContain('native/build');
  });
});

// ---------------------------------------------------------------------------------------------
describe('optional cluster store Redis (docker/k8s/redis, docker/compose.store.yaml)', () => {
  const dir = join(K8S, 'redis');
  const inDir = (kind: string): Obj | undefined => k8sObjs.find((o) => dirname(o.file) === dir && o.obj['kind'] === kind)?.obj;
  const ds = (): Obj | undefined => k8sObjs.find((o) => o.obj['kind'] === 'DaemonSet' && dirname(o.file) === join(K8S, 'daemonset'))?.obj;

  it('Service selects the Redis pods; only companion pods may reach 6379; the password Secret is the one the DaemonSet reads', () => {
    const dep = inDir('Deployment');
    const podLabels = get(dep, 'spec', 'template', 'metadata', 'labels') as Obj;
    for (const [k, v] of Object.entries(get(inDir('Service'), 'spec', 'selector') as Obj)) expect(podLabels[k]).toBe(v);
    const np = inDir('NetworkPolicy');
    for (const [k, v] of Object.entries(get(np, 'spec', 'podSelector', 'matchLabels') as Obj)) expect(podLabels[k]).toBe(v);
    const companionLabels = get(ds(), 'spec', 'template', 'metadata', 'labels') as Obj;
    const from = objs(objs(get(np, 'spec', 'ingress'))[0]?.['from']);
    expect(from.length).toBe(1);
    for (const [k, v] of Object.entries(get(from[0], 'podSelector', 'matchLabels') as Obj)) expect(companionLabels[k]).toBe(v);
    const redisC = objs(get(dep, 'spec', 'template', 'spec', 'containers'))[0];
    const secretOf = (env: unknown, name: string): unknown => get(objs(env).find((e) => e['name'] === name), 'valueFrom', 'secretKeyRef', 'name');
    const companion = objs(get(ds(), 'spec', 'template', 'spec', 'containers')).find((c) => c['name'] === 'falco-companion');
    expect(secretOf(companion?.['env'], 'FALCO_COMPANION_STORE_REDIS_PASSWORD')).toBe(secretOf(redisC?.['env'], 'REDIS_PASSWORD'));
    expect(get(objs(companion?.['env']).find((e) => e['name'] === 'FALCO_COMPANION_STORE_REDIS_PASSWORD'), 'valueFrom', 'secretKeyRef', 'optional')).toBe(true);
    expect(get(redisC, 'securityContext', 'readOnlyRootFilesystem')).toBe(true);
    expect(arr(redisC?.['args'])).toEqual(expect.arrayContaining(['--requirepass', '$(REDIS_PASSWORD)']));
  });

  it('the ConfigMap\'s commented store section, uncommented, points at that Service and validates', () => {
    const cm = k8sObjs.find((o) => o.obj['kind'] === 'ConfigMap' && dirname(o.file) === join(K8S, 'daemonset'))?.obj;
    const text = String(get(cm, 'data', 'config.yaml')).replace(/^(\s*)# (store:| {2}backend:| {2}redis:| {4}addresses:)/gm, '$1$2');
    const cfg = loadConfig<Config>(configSchema, { file: 'configmap config.yaml (store uncommented)', text, env: {} });
    expect(cfg.store.backend).toBe('redis');
    const svc = inDir('Service');
    expect(cfg.store.redis.addresses).toEqual([`${String(get(svc, 'metadata', 'name'))}.${String(get(svc, 'metadata', 'namespace'))}.svc.cluster.local:${String(objs(get(svc, 'spec', 'ports'))[0]?.['port'])}`]);
  });

  it('compose.store.yaml: the companion points at the override\'s Redis service', () => {
    const c = one(join(DOCKER, 'compose.store.yaml'));
    const services = c['services'] as Obj;
    const env = get(services, 'falco-companion', 'environment') as Record<string, string>;
    const cfg = loadConfig<Config>(configSchema, { file: null, env });
    expect(cfg.store.backend).toBe('redis');
    const [host, port] = (cfg.store.redis.addresses[0] ?? '').split(':');
    expect(Object.keys(services)).toContain(host);
    expect(arr(get(services, String(host), 'command'))).toEqual(expect.arrayContaining(['--save', '', '--appendonly', 'no']));
    expect(port).toBe('6379');
    expect(arr(get(services, 'falco-companion', 'depends_on'))).toContain(host);
  });
});
