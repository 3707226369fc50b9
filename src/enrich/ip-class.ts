/**
 * Destination classification: which kind of network an address belongs to (cluster pod or
 * service network from the operator's config, loopback, private, cloud metadata, ..., public).
 * Addresses and CIDRs come from src/net (one parser, one policy for the whole project).
 */
import { parseIp, type Ip } from '../net/address.js';
import { cidrContains, CidrMap, parseCidr, type Cidr } from '../net/cidr.js';

export type IpClass =
  | 'cluster_pod'
  | 'cluster_service'
  | 'loopback'
  | 'private'
  | 'cgnat'
  | 'cloud_metadata'
  | 'link_local'
  | 'multicast'
  | 'unique_local'
  | 'reserved'
  | 'public';

/** Special-purpose ranges (IANA registries, RFC 6890 and successors), most specific first within a family. */
export const SPECIAL_RANGES: readonly (readonly [string, IpClass])[] = [
  ['169.254.169.254/32', 'cloud_metadata'],
  ['fd00:ec2::254/128', 'cloud_metadata'],
  ['127.0.0.0/8', 'loopback'],
  ['::1/128', 'loopback'],
  ['10.0.0.0/8', 'private'],
  ['172.16.0.0/12', 'private'],
  ['192.168.0.0/16', 'private'],
  ['100.64.0.0/10', 'cgnat'],
  ['169.254.0.0/16', 'link_local'],
  ['fe80::/10', 'link_local'],
  ['224.0.0.0/4', 'multicast'],
  ['ff00::/8', 'multicast'],
  ['fc00::/7', 'unique_local'],
  ['0.0.0.0/8', 'reserved'],
  ['192.0.0.0/24', 'reserved'],
  ['192.0.2.0/24', 'reserved'],
  ['192.88.99.0/24', 'reserved'],
  ['198.18.0.0/15', 'reserved'],
  ['198.51.100.0/24', 'reserved'],
  ['203.0.113.0/24', 'reserved'],
  ['240.0.0.0/4', 'reserved'], // includes 255.255.255.255
  ['::/128', 'reserved'],
  ['100::/64', 'reserved'],
  ['64:ff9b:1::/48', 'reserved'],
  ['2001::/23', 'reserved'],
  ['2001:db8::/32', 'reserved'],
  ['3fff::/20', 'reserved'],
  ['5f00::/16', 'reserved'],
];

const NAT64 = parseCidr('64:ff9b::/96') as Cidr;
const GLOBAL_UNICAST = parseCidr('2000::/3') as Cidr;

/** Classifies addresses; the cluster CIDRs come from the operator's config. */
export class IpClassifier {
  private readonly special = new CidrMap<IpClass>();
  private readonly cluster = new CidrMap<IpClass>();

  constructor(opts: { podCidrs?: readonly string[]; serviceCidrs?: readonly string[] } = {}) {
    // Longest prefix wins inside the map, so a /32 metadata entry beats 169.254/16.
    for (const [c, cls] of SPECIAL_RANGES) this.special.set(c, cls);
    // Service CIDRs are added after pod CIDRs: on an identical CIDR the service class wins.
    for (const c of opts.podCidrs ?? []) this.cluster.set(c, 'cluster_pod');
    for (const c of opts.serviceCidrs ?? []) this.cluster.set(c, 'cluster_service');
  }

  classify(ip: Ip | string): IpClass | null {
    const a = typeof ip === 'string' ? parseIp(ip) : ip;
    if (!a) return null;
    const cl = this.cluster.get(a);
    if (cl) return cl;
    if (a.v === 6 && cidrContains(NAT64, a)) return this.classify({ v: 4, n: Number(a.n & 0xffffffffn) });
    const sp = this.special.get(a);
    if (sp) return sp;
    if (a.v === 6 && !cidrContains(GLOBAL_UNICAST, a)) return 'reserved'; // unassigned space, ::ffff:0:0/96 handled by parseIp
    return 'public';
  }
}

/** Shorthand without cluster CIDRs. */
export function classifyIp(ip: Ip | string, cluster?: { podCidrs?: readonly string[]; serviceCidrs?: readonly string[] }): IpClass | null {
  return new IpClassifier(cluster).classify(ip);
}
