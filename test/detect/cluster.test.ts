import { describe, expect, it } from 'vitest';
import { discoverCluster, formatClusterFacts, learnedPrefix, parseApiServer, serviceCidrAround, type ClusterConfig } from '../../src/detect/cluster.js';
import { detectorEnv } from '../../src/detect/wiring.js';
import { loadConfig } from '../../src/config/validate.js';
import { configSchema, type Config } from '../../src/config/schema.js';
import { formatCidr } from '../../src/net/cidr.js';
import { parseIp } from '../../src/net/address.js';

const none: ClusterConfig = { discover: true, pod_cidrs: [], service_cidrs: [], node_cidrs: [], api_servers: [] };
const cidr = (f: ReturnType<typeof serviceCidrAround>): string | null => (f ? formatCidr(f) : null);

describe('cluster discovery', () => {
  it('guesses the service network from the `kubernetes` Service address (first address of the range, at most /12 or /108)', () => {
    expect(cidr(serviceCidrAround('10.96.0.1'))).toBe('10.96.0.0/12'); // kubeadm
    expect(cidr(serviceCidrAround('10.43.0.1'))).toBe('10.43.0.0/16'); // k3s
    expect(cidr(serviceCidrAround('172.20.0.1'))).toBe('172.20.0.0/14'); // EKS 172.20.0.0/16 inside
    expect(cidr(serviceCidrAround('10.100.0.1'))).toBe('10.100.0.0/14'); // EKS 10.100.0.0/16 inside
    expect(cidr(serviceCidrAround('34.118.224.1'))).toBe('34.118.224.0/19'); // GKE 34.118.224.0/20 inside
    expect(cidr(serviceCidrAround('fd00:10:96::1'))).toBe('fd00:10:96::/108');
    expect(serviceCidrAround('not an ip')).toBeNull();
  });

  it('reads API-server addresses with or without a port', () => {
    expect(parseApiServer('10.96.0.1')).toEqual({ ip: '10.96.0.1', port: null });
    expect(parseApiServer('10.96.0.1:443')).toEqual({ ip: '10.96.0.1', port: 443 });
    expect(parseApiServer('[fd00::1]:6443')).toEqual({ ip: 'fd00::1', port: 6443 });
    expect(parseApiServer('fd00::1')).toEqual({ ip: 'fd00::1', port: null });
    for (const bad of ['kubernetes.default', '10.96.0.1:99999', '10.96.0.1:x', '']) expect(parseApiServer(bad), bad).toBeNull();
  });

  it('combines config, KUBERNETES_SERVICE_HOST and the interfaces (private subnets whole, public addresses alone)', () => {
    const f = discoverCluster({
      config: { ...none, pod_cidrs: ['10.244.0.0/16'], node_cidrs: ['192.168.10.11'], api_servers: ['192.168.10.5:6443'] },
      enrichServiceCidrs: [],
      env: { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' },
      interfaces: [
        { address: '127.0.0.1', cidr: '127.0.0.1/8', internal: true },
        { address: '10.244.1.7', cidr: '10.244.1.7/24', internal: false },
        { address: '203.0.113.9', cidr: '203.0.113.9/24', internal: false },
        { address: 'fe80::1', cidr: 'fe80::1/64', internal: false },
      ],
    });
    expect(formatClusterFacts(f)).toEqual([
      'pod 10.244.0.0/16 (config)',
      'node 192.168.10.11/32 (config)',
      'service 10.96.0.0/12 (service_host)',
      'node 10.244.1.0/24 (interface)',
      'node 203.0.113.9/32 (interface)',
      'api 192.168.10.5:6443 (config)',
      'api 10.96.0.1:443 (service_host)',
    ]);
    // A configured service network replaces the guess; discover: false reads no environment.
    const g = discoverCluster({ config: { ...none, service_cidrs: ['10.96.0.0/16'] }, env: { KUBERNETES_SERVICE_HOST: '10.96.0.1' } });
    expect(formatClusterFacts(g)).toEqual(['service 10.96.0.0/16 (config)', 'api 10.96.0.1 (service_host)']);
    expect(discoverCluster({ config: { ...none, discover: false }, env: { KUBERNETES_SERVICE_HOST: '10.96.0.1' } }).apiServers).toEqual([]);
  });

  it('widens learned pod addresses only when they are not public', () => {
    const ip = (s: string) => parseIp(s) as NonNullable<ReturnType<typeof parseIp>>;
    expect(learnedPrefix(ip('10.244.3.17'), 16, 48)).toBe('10.244.0.0/16');
    expect(learnedPrefix(ip('100.64.12.3'), 16, 48)).toBe('100.64.0.0/16');
    expect(learnedPrefix(ip('fd00:10:244:1::5'), 16, 48)).toBe('fd00:10:244::/48');
    expect(learnedPrefix(ip('34.118.5.5'), 16, 48)).toBeNull();
    expect(learnedPrefix(ip('127.0.0.1'), 16, 48)).toBeNull();
  });

  it('is wired from detect.cluster and the egress enricher\'s cluster CIDRs', () => {
    const config = loadConfig<Config>(configSchema, {
      file: null,
      text: 'enrich:\n  egress:\n    cluster_pod_cidrs: [10.42.0.0/16]\ndetect:\n  cluster:\n    api_servers: ["10.43.0.1:443"]\n',
      env: {},
    });
    const env = detectorEnv(config, { env: { KUBERNETES_SERVICE_HOST: '10.43.0.1', KUBERNETES_SERVICE_PORT: '443' }, interfaces: [] });
    expect(formatClusterFacts(env.cluster)).toEqual(['pod 10.42.0.0/16 (config)', 'service 10.43.0.0/16 (service_host)', 'api 10.43.0.1:443 (config)']);
    expect(() => loadConfig<Config>(configSchema, { file: null, text: 'detect:\n  cluster:\n    api_servers: [kubernetes]\n', env: {} })).toThrow(/detect\.cluster\.api_servers\[0\]: must be an IP address/);
  });
});
