/**
 * How libsinsp (libs 0.20, Falco 0.40) renders syscall arguments: the name tables of the driver
 * (socket families, socket option levels and names, prctl options, open and exec flags, clone
 * flags, mount flags, errno names) and the flag-string rule (names in table order, each matched
 * flag consumed, joined with `|`). Only the entries our scenarios and rules can meet are listed;
 * an unknown value renders as its number, as Falco does.
 */

export const SOCKET_FAMILIES: Readonly<Record<number, string>> = {
  0: 'AF_UNSPEC',
  1: 'AF_UNIX',
  2: 'AF_INET',
  3: 'AF_AX25',
  4: 'AF_IPX',
  5: 'AF_APPLETALK',
  6: 'AF_NETROM',
  7: 'AF_BRIDGE',
  8: 'AF_ATMPVC',
  9: 'AF_X25',
  10: 'AF_INET6',
  11: 'AF_ROSE',
  12: 'AF_DECnet',
  13: 'AF_NETBEUI',
  14: 'AF_SECURITY',
  15: 'AF_KEY',
  16: 'AF_NETLINK',
  17: 'AF_PACKET',
  18: 'AF_ASH',
  19: 'AF_ECONET',
  20: 'AF_ATMSVC',
  21: 'AF_RDS',
  22: 'AF_SNA',
  23: 'AF_IRDA',
  24: 'AF_PPPOX',
  25: 'AF_WANPIPE',
  26: 'AF_LLC',
  27: 'AF_IB',
  28: 'AF_MPLS',
  29: 'AF_CAN',
  30: 'AF_TIPC',
  31: 'AF_BLUETOOTH',
  32: 'AF_IUCV',
  33: 'AF_RXRPC',
  34: 'AF_ISDN',
  35: 'AF_PHONET',
  36: 'AF_IEEE802154',
  37: 'AF_CAIF',
  38: 'AF_ALG',
  39: 'AF_NFC',
  40: 'AF_VSOCK',
  41: 'AF_KCM',
  42: 'AF_QIPCRTR',
  43: 'AF_SMC',
  44: 'AF_XDP',
};

export const SOCKOPT_LEVELS: Readonly<Record<number, string>> = { 1: 'SOL_SOCKET', 6: 'SOL_TCP' };

export const SOCKOPT_NAMES: Readonly<Record<number, string>> = {
  1: 'SO_DEBUG',
  2: 'SO_REUSEADDR',
  3: 'SO_TYPE',
  4: 'SO_ERROR',
  5: 'SO_DONTROUTE',
  6: 'SO_BROADCAST',
  7: 'SO_SNDBUF',
  8: 'SO_RCVBUF',
  9: 'SO_KEEPALIVE',
  10: 'SO_OOBINLINE',
  11: 'SO_NO_CHECK',
  12: 'SO_PRIORITY',
  13: 'SO_LINGER',
  14: 'SO_BSDCOMPAT',
  15: 'SO_REUSEPORT',
  16: 'SO_PASSCRED',
  17: 'SO_PEERCRED',
  18: 'SO_RCVLOWAT',
  19: 'SO_SNDLOWAT',
  20: 'SO_RCVTIMEO',
  21: 'SO_SNDTIMEO',
  22: 'SO_SECURITY_AUTHENTICATION',
  23: 'SO_SECURITY_ENCRYPTION_TRANSPORT',
  24: 'SO_SECURITY_ENCRYPTION_NETWORK',
  25: 'SO_BINDTODEVICE',
  26: 'SO_ATTACH_FILTER',
  27: 'SO_DETACH_FILTER',
  28: 'SO_PEERNAME',
  29: 'SO_TIMESTAMP',
  30: 'SO_ACCEPTCONN',
  31: 'SO_PEERSEC',
  32: 'SO_SNDBUFFORCE',
  33: 'SO_RCVBUFFORCE',
  34: 'SO_PASSSEC',
  35: 'SO_TIMESTAMPNS',
  36: 'SO_MARK',
  37: 'SO_TIMESTAMPING',
  38: 'SO_PROTOCOL',
  39: 'SO_DOMAIN',
  40: 'SO_RXQ_OVFL',
  41: 'SO_WIFI_STATUS',
  42: 'SO_PEEK_OFF',
  43: 'SO_NOFCS',
  44: 'SO_LOCK_FILTER',
  45: 'SO_SELECT_ERR_QUEUE',
  46: 'SO_BUSY_POLL',
  47: 'SO_MAX_PACING_RATE',
  48: 'SO_BPF_EXTENSIONS',
  49: 'SO_INCOMING_CPU',
  50: 'SO_ATTACH_BPF',
  51: 'SO_ATTACH_REUSEPORT_CBPF',
  52: 'SO_ATTACH_REUSEPORT_EBPF',
  53: 'SO_CNX_ADVICE',
  56: 'SO_MEMINFO',
  57: 'SO_INCOMING_NAPI_ID',
  58: 'SO_COOKIE',
  59: 'SO_PEERGROUPS',
  60: 'SO_ZEROCOPY',
  61: 'SO_TXTIME',
  62: 'SO_BINDTOIFINDEX',
  67: 'SO_DETACH_REUSEPORT_BPF',
};

export const PRCTL_OPTIONS: Readonly<Record<number, string>> = {
  1: 'PR_SET_PDEATHSIG',
  2: 'PR_GET_PDEATHSIG',
  3: 'PR_GET_DUMPABLE',
  4: 'PR_SET_DUMPABLE',
  7: 'PR_GET_KEEPCAPS',
  8: 'PR_SET_KEEPCAPS',
  15: 'PR_SET_NAME',
  16: 'PR_GET_NAME',
  21: 'PR_GET_SECCOMP',
  22: 'PR_SET_SECCOMP',
  23: 'PR_CAPBSET_READ',
  24: 'PR_CAPBSET_DROP',
  27: 'PR_GET_SECUREBITS',
  28: 'PR_SET_SECUREBITS',
  33: 'PR_MCE_KILL',
  34: 'PR_MCE_KILL_GET',
  36: 'PR_SET_CHILD_SUBREAPER',
  37: 'PR_GET_CHILD_SUBREAPER',
  38: 'PR_SET_NO_NEW_PRIVS',
  39: 'PR_GET_NO_NEW_PRIVS',
  40: 'PR_GET_TID_ADDRESS',
  41: 'PR_SET_THP_DISABLE',
  42: 'PR_GET_THP_DISABLE',
  47: 'PR_CAP_AMBIENT',
};

export const BPF_COMMANDS: Readonly<Record<number, string>> = {
  0: 'BPF_MAP_CREATE',
  1: 'BPF_MAP_LOOKUP_ELEM',
  2: 'BPF_MAP_UPDATE_ELEM',
  3: 'BPF_MAP_DELETE_ELEM',
  4: 'BPF_MAP_GET_NEXT_KEY',
  5: 'BPF_PROG_LOAD',
  6: 'BPF_OBJ_PIN',
  7: 'BPF_OBJ_GET',
  8: 'BPF_PROG_ATTACH',
  9: 'BPF_PROG_DETACH',
};

/** Flag tables: [name, value] in the driver's order; formatting consumes matched bits. */
type FlagTable = readonly (readonly [string, number])[];

/** PPM open flags (the driver's own bit values, converted from the kernel's O_* below). */
export const PPM_O = {
  RDONLY: 1 << 0,
  WRONLY: 1 << 1,
  RDWR: (1 << 0) | (1 << 1),
  CREAT: 1 << 2,
  APPEND: 1 << 3,
  DSYNC: 1 << 4,
  EXCL: 1 << 5,
  NONBLOCK: 1 << 6,
  SYNC: 1 << 7,
  TRUNC: 1 << 8,
  DIRECT: 1 << 9,
  DIRECTORY: 1 << 10,
  LARGEFILE: 1 << 11,
  CLOEXEC: 1 << 12,
  TMPFILE: 1 << 13,
  F_CREATED: 1 << 14,
} as const;

export const FILE_FLAGS: FlagTable = [
  ['O_LARGEFILE', PPM_O.LARGEFILE],
  ['O_DIRECTORY', PPM_O.DIRECTORY],
  ['O_DIRECT', PPM_O.DIRECT],
  ['O_TRUNC', PPM_O.TRUNC],
  ['O_SYNC', PPM_O.SYNC],
  ['O_NONBLOCK', PPM_O.NONBLOCK],
  ['O_EXCL', PPM_O.EXCL],
  ['O_DSYNC', PPM_O.DSYNC],
  ['O_APPEND', PPM_O.APPEND],
  ['O_CREAT', PPM_O.CREAT],
  ['O_RDWR', PPM_O.RDWR],
  ['O_WRONLY', PPM_O.WRONLY],
  ['O_RDONLY', PPM_O.RDONLY],
  ['O_CLOEXEC', PPM_O.CLOEXEC],
  ['O_NONE', 0],
  ['O_TMPFILE', PPM_O.TMPFILE],
  ['O_F_CREATED', PPM_O.F_CREATED],
];

/** Linux x86_64 open(2) flags → PPM flags (what the driver sends). */
export function openFlagsToPpm(flags: number, created: boolean): number {
  let r = 0;
  const acc = flags & 3;
  if (acc === 0) r |= PPM_O.RDONLY;
  else if (acc === 1) r |= PPM_O.WRONLY;
  else if (acc === 2) r |= PPM_O.RDWR;
  if (flags & 0o100) r |= PPM_O.CREAT;
  if (flags & 0o2000) r |= PPM_O.APPEND;
  if (flags & 0o10000) r |= PPM_O.DSYNC;
  if (flags & 0o200) r |= PPM_O.EXCL;
  if (flags & 0o4000) r |= PPM_O.NONBLOCK;
  if ((flags & 0o4010000) === 0o4010000) r |= PPM_O.SYNC;
  if (flags & 0o1000) r |= PPM_O.TRUNC;
  if (flags & 0o40000) r |= PPM_O.DIRECT;
  if (flags & 0o200000) r |= PPM_O.DIRECTORY;
  if (flags & 0o100000) r |= PPM_O.LARGEFILE;
  if (flags & 0o2000000) r |= PPM_O.CLOEXEC;
  if ((flags & 0o20200000) === 0o20200000) r |= PPM_O.TMPFILE;
  if (created) r |= PPM_O.F_CREATED;
  return r;
}

export const EXECVE_FLAGS: FlagTable = [
  ['EXE_WRITABLE', 1],
  ['EXE_UPPER_LAYER', 2],
  ['EXE_FROM_MEMFD', 4],
  ['EXE_LOWER_LAYER', 8],
];

/** Clone / unshare / setns flags (driver's PPM_CL_* values converted from CLONE_*). */
export const CLONE_FLAGS: FlagTable = [
  ['CLONE_FILES', 1 << 0],
  ['CLONE_FS', 1 << 1],
  ['CLONE_IO', 1 << 2],
  ['CLONE_NEWIPC', 1 << 3],
  ['CLONE_NEWNET', 1 << 4],
  ['CLONE_NEWNS', 1 << 5],
  ['CLONE_NEWPID', 1 << 6],
  ['CLONE_NEWUTS', 1 << 7],
  ['CLONE_PARENT', 1 << 8],
  ['CLONE_PARENT_SETTID', 1 << 9],
  ['CLONE_PTRACE', 1 << 10],
  ['CLONE_SIGHAND', 1 << 11],
  ['CLONE_SYSVSEM', 1 << 12],
  ['CLONE_THREAD', 1 << 13],
  ['CLONE_UNTRACED', 1 << 14],
  ['CLONE_VM', 1 << 15],
  ['CLONE_NEWUSER', 1 << 18],
  ['CLONE_CHILD_CLEARTID', 1 << 19],
  ['CLONE_CHILD_SETTID', 1 << 20],
  ['CLONE_SETTLS', 1 << 21],
  ['CLONE_STOPPED', 1 << 22],
  ['CLONE_VFORK', 1 << 23],
  ['CLONE_NEWCGROUP', 1 << 24],
];

const LINUX_TO_PPM_CLONE: readonly (readonly [number, number])[] = [
  [0x400, 1 << 0], // CLONE_FILES
  [0x200, 1 << 1], // CLONE_FS
  [0x80000000, 1 << 2], // CLONE_IO
  [0x08000000, 1 << 3], // CLONE_NEWIPC
  [0x40000000, 1 << 4], // CLONE_NEWNET
  [0x00020000, 1 << 5], // CLONE_NEWNS
  [0x20000000, 1 << 6], // CLONE_NEWPID
  [0x04000000, 1 << 7], // CLONE_NEWUTS
  [0x8000, 1 << 8], // CLONE_PARENT
  [0x100000, 1 << 9], // CLONE_PARENT_SETTID
  [0x2000, 1 << 10], // CLONE_PTRACE
  [0x800, 1 << 11], // CLONE_SIGHAND
  [0x40000, 1 << 12], // CLONE_SYSVSEM
  [0x10000, 1 << 13], // CLONE_THREAD
  [0x800000, 1 << 14], // CLONE_UNTRACED
  [0x100, 1 << 15], // CLONE_VM
  [0x10000000, 1 << 18], // CLONE_NEWUSER
  [0x200000, 1 << 19], // CLONE_CHILD_CLEARTID
  [0x1000000, 1 << 20], // CLONE_CHILD_SETTID
  [0x80000, 1 << 21], // CLONE_SETTLS
  [0x4000, 1 << 23], // CLONE_VFORK
  [0x02000000, 1 << 24], // CLONE_NEWCGROUP
];

export function cloneFlagsToPpm(flags: number): number {
  let r = 0;
  for (const [linux, ppm] of LINUX_TO_PPM_CLONE) if ((flags & linux) >>> 0 === linux >>> 0 && linux !== 0) r = (r | ppm) >>> 0;
  return r;
}

export const MOUNT_FLAGS: FlagTable = [
  ['RDONLY', 1],
  ['NOSUID', 2],
  ['NODEV', 4],
  ['NOEXEC', 8],
  ['SYNCHRONOUS', 16],
  ['REMOUNT', 32],
  ['MANDLOCK', 64],
  ['DIRSYNC', 128],
  ['NOATIME', 1024],
  ['NODIRATIME', 2048],
  ['BIND', 4096],
  ['MOVE', 8192],
  ['REC', 16384],
  ['SILENT', 32768],
  ['POSIXACL', 1 << 16],
  ['UNBINDABLE', 1 << 17],
  ['PRIVATE', 1 << 18],
  ['SLAVE', 1 << 19],
  ['SHARED', 1 << 20],
  ['RELATIME', 1 << 21],
  ['KERNMOUNT', 1 << 22],
  ['I_VERSION', 1 << 23],
  ['STRICTATIME', 1 << 24],
  ['LAZYTIME', 1 << 25],
];

/** The flag string Falco prints: matched names in table order, bits consumed, `|`-joined. */
export function flagsString(table: FlagTable, value: number): string {
  let val = value >>> 0;
  const names: string[] = [];
  for (const [name, bits] of table) {
    if (bits === 0) {
      if (value === 0 && names.length === 0) names.push(name);
      continue;
    }
    if (val !== 0 && ((val & bits) >>> 0) === bits >>> 0) {
      names.push(name);
      val = (val & ~bits) >>> 0;
    }
  }
  return names.join('|');
}

/** errno names for negative results (`evt.res`). */
export const ERRNO: Readonly<Record<number, string>> = {
  1: 'EPERM',
  2: 'ENOENT',
  3: 'ESRCH',
  4: 'EINTR',
  5: 'EIO',
  9: 'EBADF',
  11: 'EAGAIN',
  12: 'ENOMEM',
  13: 'EACCES',
  14: 'EFAULT',
  16: 'EBUSY',
  17: 'EEXIST',
  19: 'ENODEV',
  20: 'ENOTDIR',
  21: 'EISDIR',
  22: 'EINVAL',
  24: 'EMFILE',
  28: 'ENOSPC',
  30: 'EROFS',
  38: 'ENOSYS',
  88: 'ENOTSOCK',
  93: 'EPROTONOSUPPORT',
  95: 'EOPNOTSUPP',
  97: 'EAFNOSUPPORT',
  98: 'EADDRINUSE',
  99: 'EADDRNOTAVAIL',
  101: 'ENETUNREACH',
  104: 'ECONNRESET',
  106: 'EISCONN',
  110: 'ETIMEDOUT',
  111: 'ECONNREFUSED',
  113: 'EHOSTUNREACH',
  114: 'EALREADY',
  115: 'EINPROGRESS',
};

/** `evt.res`: SUCCESS for a non-negative result, else the errno name (or the number). */
export function resString(ret: number): string {
  if (ret >= 0) return 'SUCCESS';
  return ERRNO[-ret] ?? String(ret);
}

/** Capability names in bit order (thread.cap_effective renders the set bits, space separated). */
export const CAPABILITIES: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_DAC_READ_SEARCH',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETPCAP',
  'CAP_LINUX_IMMUTABLE',
  'CAP_NET_BIND_SERVICE',
  'CAP_NET_BROADCAST',
  'CAP_NET_ADMIN',
  'CAP_NET_RAW',
  'CAP_IPC_LOCK',
  'CAP_IPC_OWNER',
  'CAP_SYS_MODULE',
  'CAP_SYS_RAWIO',
  'CAP_SYS_CHROOT',
  'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT',
  'CAP_SYS_ADMIN',
  'CAP_SYS_BOOT',
  'CAP_SYS_NICE',
  'CAP_SYS_RESOURCE',
  'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG',
  'CAP_MKNOD',
  'CAP_LEASE',
  'CAP_AUDIT_WRITE',
  'CAP_AUDIT_CONTROL',
  'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE',
  'CAP_MAC_ADMIN',
  'CAP_SYSLOG',
  'CAP_WAKE_ALARM',
  'CAP_BLOCK_SUSPEND',
  'CAP_AUDIT_READ',
  'CAP_PERFMON',
  'CAP_BPF',
  'CAP_CHECKPOINT_RESTORE',
];

export function capabilitiesString(caps: bigint): string {
  const out: string[] = [];
  for (let i = 0; i < CAPABILITIES.length; i++) if ((caps >> BigInt(i)) & 1n) out.push(CAPABILITIES[i] as string);
  return out.join(' ');
}

/** Decode a sockaddr the probe read as 28 raw bytes (`\xNN` escaped) plus the unix path string. */
export function decodeSockaddr(raw: Buffer, unixPath: string): { family: number; ip?: string; port?: number; path?: string } {
  const family = raw.length >= 2 ? raw.readUInt16LE(0) : 0;
  if (family === 2 && raw.length >= 8) {
    return { family, port: raw.readUInt16BE(2), ip: `${raw[4]}.${raw[5]}.${raw[6]}.${raw[7]}` };
  }
  if (family === 10 && raw.length >= 24) {
    const words: string[] = [];
    for (let i = 8; i < 24; i += 2) words.push(raw.readUInt16BE(i).toString(16));
    return { family, port: raw.readUInt16BE(2), ip: compressIpv6(words) };
  }
  if (family === 1) return { family, path: unixPath };
  return { family };
}

function compressIpv6(words: string[]): string {
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < words.length; ) {
    if (words[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < words.length && words[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return words.join(':');
  return `${words.slice(0, best).join(':')}::${words.slice(best + bestLen).join(':')}`;
}
