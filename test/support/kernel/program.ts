/**
 * The bpftrace program of the kernel observer (test infrastructure, not shipped).
 *
 * It attaches to the enter and exit tracepoints of the syscalls Falco's rules key on (ours and the
 * official ones), plus task creation and exit, and prints one record per probe through `printf`
 * (run with `-f json`, so every record arrives as one JSON line whatever bytes it holds). Records
 * are fields separated by 0x1f:
 *
 *   F  ts tid pid child_tid clone_flags child_comm          a task was created by a tracked task
 *   X  ts tid pid                                         a tracked task exited
 *   H  ts tid pid ppid comm uid gid euid vpid vtid sid loginuid cap_effective tty
 *   C  ts tid cgroup                                      the task's cgroup name (D: its parent's)
 *                                                         the context of the E/R record (same ts, tid)
 *   E  ts tid name args...                                a syscall enter event
 *   R  ts tid name ret extra...                           a syscall exit event
 *   P  ts tid what index component                        one path component (exe path, leaf first)
 *   M  ts                                                  the marker: every probe is attached
 *   S  ts tid index string                                 an extra string argument of the E record
 *   A  ts tid chunk bytes                                 argv of an exec (NUL separated, hex escaped)
 *
 * Only processes of the scenario are traced: descendants of the seed processes (a pid subtree
 * tracked with `task:task_newtask`), so the rest of the machine costs nothing. The program is
 * bounded: it exits after `maxSeconds` or `maxEvents` records, whichever comes first.
 *
 * Kernel layouts read through BTF: task_struct, cred, signal_struct (session, tty), css_set and
 * cgroup (container id from the cgroup name), mm (argv, exe_file), dentry/mount (path walk),
 * ovl_inode (overlay upper layer), socket/sock/unix_sock (tuples), sk_filter (attached filter).
 * Two offsets bpftrace 0.17 cannot take from BTF are computed here and checked by `layoutCheck`.
 */

export const FIELD_SEP = '\x1f';

export interface ProgramOptions {
  /** Processes whose descendants are traced (the seeds' own events only when in `tracedSeeds`). */
  readonly seeds: readonly number[];
  /** Seeds that are traced themselves (already-running processes of the scenario, e.g. dockerd). */
  readonly tracedSeeds: readonly number[];
  readonly maxSeconds: number;
  readonly maxEvents: number;
  /** `v1:<subsys id>` to read a cgroup v1 controller's cgroup, or `v2` for the unified hierarchy. */
  readonly cgroup: string;
  /** The probes are ready once this process's getppid() is seen (the marker probe is attached last). */
  readonly markerPid: number;
  /** Trace only these syscalls (debugging). */
  readonly only?: readonly string[];
}

/** x86_64 syscall numbers of the module syscalls (no per-syscall tracepoint without CONFIG_MODULES). */
export const NR_INIT_MODULE = 175;
export const NR_FINIT_MODULE = 313;

const S = '\\x1f';

function cgroupExpr(cg: string): string {
  if (cg === 'v2') return '$t->cgroups->dfl_cgrp->kn';
  const m = /^v1:(\d+)$/.exec(cg);
  if (!m) throw new Error(`bad cgroup selector ${cg}`);
  return `$t->cgroups->subsys[${m[1]}]->cgroup->kn`;
}

/** Context line for the current task; `$ts` must be set. */
function header(opts: ProgramOptions): string {
  return `
  $t = (struct task_struct *)curtask;
  $kn = (uint64)${cgroupExpr(opts.cgroup)};
  $knp = *(uint64 *)($kn + 8);
  $lvl = $t->group_leader->thread_pid->level;
  $vpid = *(int32 *)((uint64)$t->group_leader->thread_pid + sizeof(struct pid) + $lvl * 16);
  $vtid = *(int32 *)((uint64)$t->thread_pid + sizeof(struct pid) + $lvl * 16);
  $sid = *(int32 *)((uint64)$t->signal->pids[3] + sizeof(struct pid));
  $tty = $t->signal->tty;
  $ttynr = (uint64)0;
  if ($tty != 0) { $ttynr = (uint64)(($tty->driver->major << 8) | (($tty->driver->minor_start + $tty->index) & 0xff) | ((($tty->driver->minor_start + $tty->index) & 0xfff00) << 12)); }
  printf("H${S}%llu${S}%d${S}%d${S}%d${S}%s${S}%u${S}%u${S}%u${S}%d${S}%d${S}%d${S}%u${S}%llx${S}%llu\\n",
    $ts, tid, pid, $t->real_parent->tgid, comm, $t->cred->uid.val, $t->cred->gid.val, $t->cred->euid.val,
    $vpid, $vtid, $sid, $t->loginuid.val, $t->cred->cap_effective.val, $ttynr);
  printf("C${S}%llu${S}%d${S}%s\\n", $ts, tid, str(*(uint64 *)($kn + 16), 72));
  printf("D${S}%llu${S}%d${S}%s\\n", $ts, tid, str(*(uint64 *)($knp + 16), 40));
  @n = @n + 1;
  if (@n > ${opts.maxEvents}) { printf("Z${S}events\\n"); exit(); }`;
}

/** Socket details of fd `$fd` of the current task (tuple, family, type, proto, unix peer and path). */
function socketInfo(tag: string): string {
  return `
  $file = (struct file *)0;
  if ($fd < $t->files->fdt->max_fds) { $file = (struct file *)*(uint64 *)kptr((uint64)$t->files->fdt->fd + $fd * 8); }
  if ($file != 0) {
    $sock = (struct socket *)$file->private_data;
    $sk = $sock->sk;
    $fam = $sk->__sk_common.skc_family;
    if ($fam == 1) {
      $us = (struct unix_sock *)$sk;
      $peer = (struct unix_sock *)$us->peer;
      $upath = (uint64)0;
      if ($us->addr != 0) { $upath = (uint64)$us->addr + 10; } else { if ($peer != 0) { if ($peer->addr != 0) { $upath = (uint64)$peer->addr + 10; } } }
      if ($upath != 0) {
        printf("${tag}${S}%llu${S}%d${S}unix${S}%d${S}%llx${S}%llx${S}%s\\n", $ts, tid, $sk->sk_type, (uint64)$us, (uint64)$peer, str($upath, 108));
      } else {
        printf("${tag}${S}%llu${S}%d${S}unix${S}%d${S}%llx${S}%llx${S}\\n", $ts, tid, $sk->sk_type, (uint64)$us, (uint64)$peer);
      }
    }
    if ($fam == 2) {
      printf("${tag}${S}%llu${S}%d${S}inet${S}%d${S}%d${S}%s${S}%u${S}%s${S}%u\\n", $ts, tid, $sk->sk_type, $sk->sk_protocol,
        ntop($sk->__sk_common.skc_rcv_saddr), $sk->__sk_common.skc_num, ntop($sk->__sk_common.skc_daddr), bswap($sk->__sk_common.skc_dport));
    }
    if ($fam == 10) {
      printf("${tag}${S}%llu${S}%d${S}inet6${S}%d${S}%d${S}%s${S}%u${S}%s${S}%u\\n", $ts, tid, $sk->sk_type, $sk->sk_protocol,
        ntop($sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8), $sk->__sk_common.skc_num, ntop($sk->__sk_common.skc_v6_daddr.in6_u.u6_addr8), bswap($sk->__sk_common.skc_dport));
    }
  }`;
}

/** Walk a path (dentry + vfsmount) up to the root, printing one P record per component. */
function pathWalk(what: string, dentry: string, vfsmount: string, depth = 24): string {
  return `
  $d = ${dentry};
  $vm = ${vfsmount};
  $m = (struct mount *)((uint64)$vm - 32);
  $done = 0;
  $i = 0;
  unroll(${depth}) {
    if ($done == 0) {
      if ($d == $vm->mnt_root) {
        if ($m == $m->mnt_parent) { $done = 1; }
        else { $d = $m->mnt_mountpoint; $m = $m->mnt_parent; $vm = (struct vfsmount *)((uint64)$m + 32); }
      }
      if ($done == 0) {
        if ($d == $d->d_parent) { $done = 1; }
        else {
          printf("P${S}%llu${S}%d${S}${what}${S}%d${S}%s\\n", $ts, tid, $i, str($d->d_name.name, 128));
          $d = $d->d_parent;
          $i = $i + 1;
        }
      }
    }
  }
  if ($done == 0) { printf("P${S}%llu${S}%d${S}${what}${S}%d${S}\\n", $ts, tid, -1); }`;
}

interface SyscallSpec {
  readonly name: string;
  /** Enter body: prints the E record (after the header); may stash values for the exit. */
  readonly enter: string;
  /** Exit body: prints the R record; `$ret` is the return value. */
  readonly exit: string;
}

function enterLine(name: string, fmt: string, args: string): string {
  const tail = fmt === '' ? '' : `${S}${fmt}`;
  const a = args === '' ? '' : `, ${args}`;
  return `printf("E${S}%llu${S}%d${S}${name}${tail}\\n", $ts, tid${a});`;
}

function exitLine(name: string, fmt = '', args = ''): string {
  const tail = fmt === '' ? '' : `${S}${fmt}`;
  const a = args === '' ? '' : `, ${args}`;
  return `printf("R${S}%llu${S}%d${S}${name}${S}%lld${tail}\\n", $ts, tid, $ret${a});`;
}

/** The sockaddr's first bytes, never past its length (a read across an unmapped page returns zeros). */
const SOCKADDR = 'buf(uptr(args->ADDR), args->addrlen > 28 ? 28 : (args->addrlen < 0 ? 0 : args->addrlen))';

/** An extra string argument of an enter event, in its own record (one string per printf). */
function extraString(index: number, expr: string): string {
  return `printf("S${S}%llu${S}%d${S}${index}${S}%s\\n", $ts, tid, ${expr});`;
}

function syscalls(): SyscallSpec[] {
  const simple = (name: string, fmt: string, args: string): SyscallSpec => ({ name, enter: enterLine(name, fmt, args), exit: exitLine(name) });
  return [
    simple('socket', '%d' + S + '%d' + S + '%d', 'args->family, args->type, args->protocol'),
    {
      name: 'setsockopt',
      enter: `@fd[tid] = (uint64)args->fd; ${enterLine('setsockopt', '%d' + S + '%d' + S + '%d' + S + '%d', 'args->fd, args->level, args->optname, args->optlen')}`,
      exit: `${exitLine('setsockopt')}
  $fd = @fd[tid]; delete(@fd[tid]);
  $file = (struct file *)0;
  if ($fd < $t->files->fdt->max_fds) { $file = (struct file *)*(uint64 *)kptr((uint64)$t->files->fdt->fd + $fd * 8); }
  if ($file != 0) {
    $sk = ((struct socket *)$file->private_data)->sk;
    $flt = $sk->sk_filter;
    if ($flt != 0) {
      $orig = $flt->prog->orig_prog;
      printf("K${S}%llu${S}%d${S}filter${S}%u${S}%u\\n", $ts, tid, $flt->prog->len, $orig != 0 ? $orig->len : 0);
    }
  }`,
    },
    simple('bpf', '%d', 'args->cmd'),
    {
      name: 'bind',
      enter: `${enterLine('bind', `%d${S}%r`, `args->fd, ${SOCKADDR.replaceAll('ADDR', 'umyaddr')}`)} ${extraString(0, 'str(uptr((uint64)args->umyaddr + 2), 108)')}`,
      exit: exitLine('bind'),
    },
    simple('listen', `%d${S}%d`, 'args->fd, args->backlog'),
    {
      name: 'accept',
      enter: enterLine('accept', '%d', 'args->fd'),
      exit: `${exitLine('accept')}
  if ($ret >= 0) { $fd = (uint64)$ret; ${socketInfo('K')} }`,
    },
    {
      name: 'accept4',
      enter: enterLine('accept4', `%d${S}%d`, 'args->fd, args->flags'),
      exit: `${exitLine('accept4')}
  if ($ret >= 0) { $fd = (uint64)$ret; ${socketInfo('K')} }`,
    },
    {
      name: 'connect',
      enter: `@fd[tid] = (uint64)args->fd; ${enterLine('connect', `%d${S}%r`, `args->fd, ${SOCKADDR.replaceAll('ADDR', 'uservaddr')}`)} ${extraString(0, 'str(uptr((uint64)args->uservaddr + 2), 108)')}`,
      exit: `${exitLine('connect')}
  $fd = @fd[tid]; delete(@fd[tid]);
  ${socketInfo('K')}`,
    },
    {
      name: 'prctl',
      enter: `if (args->option == 15 || args->option == 16) { ${enterLine('prctl', `%d${S}%llu${S}%s`, 'args->option, args->arg2, str(uptr(args->arg2), 16)')} }
  else { ${enterLine('prctl', `%d${S}%llu${S}`, 'args->option, args->arg2')} }`,
      exit: exitLine('prctl'),
    },
    { name: 'open', enter: enterLine('open', `%s${S}%d${S}%d`, 'str(uptr(args->filename), 128), args->flags, args->mode'), exit: openExit('open') },
    { name: 'openat', enter: enterLine('openat', `%d${S}%s${S}%d${S}%d`, 'args->dfd, str(uptr(args->filename), 128), args->flags, args->mode'), exit: openExit('openat') },
    {
      name: 'openat2',
      enter: enterLine('openat2', `%d${S}%s${S}%llu${S}%llu`, 'args->dfd, str(uptr(args->filename), 128), *(uint64 *)uptr(args->how), *(uint64 *)uptr((uint64)args->how + 8)'),
      exit: openExit('openat2'),
    },
    simple('close', '%d', 'args->fd'),
    simple('dup', '%d', 'args->fildes'),
    simple('dup2', `%d${S}%d`, 'args->oldfd, args->newfd'),
    simple('dup3', `%d${S}%d${S}%d`, 'args->oldfd, args->newfd, args->flags'),
    simple('fcntl', `%d${S}%d${S}%llu`, 'args->fd, args->cmd, args->arg'),
    {
      name: 'pipe',
      enter: `@pp[tid] = (uint64)args->fildes; ${enterLine('pipe', '', '')}`,
      exit: `$p = @pp[tid]; delete(@pp[tid]);
  ${exitLine('pipe', `%d${S}%d`, '*(int32 *)uptr($p), *(int32 *)uptr($p + 4)')}`,
    },
    {
      name: 'pipe2',
      enter: `@pp[tid] = (uint64)args->fildes; ${enterLine('pipe2', '%d', 'args->flags')}`,
      exit: `$p = @pp[tid]; delete(@pp[tid]);
  ${exitLine('pipe2', `%d${S}%d`, '*(int32 *)uptr($p), *(int32 *)uptr($p + 4)')}`,
    },
    simple('unshare', '%llu', 'args->unshare_flags'),
    simple('setns', `%d${S}%d`, 'args->fd, args->flags'),
    {
      name: 'mount',
      enter: `${enterLine('mount', '%llu', 'args->flags')} ${extraString(0, 'str(uptr(args->dev_name), 128)')} ${extraString(1, 'str(uptr(args->dir_name), 128)')} ${extraString(2, 'str(uptr(args->type), 32)')}`,
      exit: exitLine('mount'),
    },
    simple('umount', `%s${S}%d`, 'str(uptr(args->name), 128), args->flags'),
    simple('setsid', '', ''),
    simple('chdir', '%s', 'str(uptr(args->filename), 128)'),
    simple('fchdir', '%d', 'args->fd'),
    { name: 'execve', enter: enterLine('execve', '%s', 'str(uptr(args->filename), 128)'), exit: execExit('execve') },
    { name: 'execveat', enter: enterLine('execveat', `%d${S}%s${S}%d`, 'args->fd, str(uptr(args->filename), 128), args->flags'), exit: execExit('execveat') },
  ];
}

/** open exit: whether this open created the file (FMODE_CREATED, Falco's O_F_CREATED). */
function openExit(name: string): string {
  return `${exitLine(name)}
  if ($ret >= 0) {
    $fd = (uint64)$ret;
    $file = (struct file *)0;
    if ($fd < $t->files->fdt->max_fds) { $file = (struct file *)*(uint64 *)kptr((uint64)$t->files->fdt->fd + $fd * 8); }
    if ($file != 0) { printf("K${S}%llu${S}%d${S}file${S}%u\\n", $ts, tid, $file->f_mode); }
  }`;
}

function execExit(name: string): string {
  return `${exitLine(name)}
  if ($ret == 0) {
    $mm = $t->mm;
    $alen = $mm->arg_end - $mm->arg_start;
    // Read exactly the argv bytes: with a small environment argv ends near the top of the stack
    // mapping, and a read across its end would fail and come back as zeros.
    ${[0, 1, 2, 3]
      .map(
        (k) => `if ($alen > ${k * 120}) {
      $l${k} = $alen - ${k * 120};
      if ($l${k} > 120) { $l${k} = 120; }
      printf("A${S}%llu${S}%d${S}${k}${S}%d${S}%r\\n", $ts, tid, $alen, buf(uptr($mm->arg_start + ${k * 120}), $l${k}));
    }`,
      )
      .join('\n    ')}
    $f = $mm->exe_file;
    $ino = $f->f_inode;
    $upper = (uint64)0;
    if ($ino->i_sb->s_magic == 0x794c7630) { $upper = *(uint64 *)((uint64)$ino + sizeof(struct inode)); }
    printf("I${S}%llu${S}%d${S}%x${S}%llu${S}%o${S}%u${S}%u${S}%llu${S}%s\\n", $ts, tid, $ino->i_sb->s_magic, $upper,
      $ino->i_mode, $ino->i_uid.val, $ino->i_gid.val, $ino->i_ino, str($f->f_path.dentry->d_name.name, 64));
    ${pathWalk('exe', '$f->f_path.dentry', '$f->f_path.mnt')}
    ${pathWalk('cwd', '$t->fs->pwd.dentry', '$t->fs->pwd.mnt', 16)}
  }`;
}

export function observerProgram(opts: ProgramOptions): string {
  const traced = opts.tracedSeeds.map((p) => `  @track[${p}] = 1;`).join('\n');
  const seedTest = opts.seeds.length === 0 ? '0' : opts.seeds.map((p) => `pid == ${p}`).join(' || ');
  const parts: string[] = [];
  parts.push(`BEGIN {
${traced}
  @n = 0;
  @secs = 0;
  printf("B${S}%llu\\n", nsecs);
}
interval:s:1 {
  @secs = @secs + 1;
  if (@secs > ${opts.maxSeconds}) { printf("Z${S}time\\n"); exit(); }
}
tracepoint:task:task_newtask /${seedTest} || @track[pid]/ {
  @track[args->pid] = 1;
  printf("F${S}%llu${S}%d${S}%d${S}%d${S}%llu${S}%s\\n", nsecs, tid, pid, args->pid, args->clone_flags, args->comm);
}
tracepoint:sched:sched_process_exit /@track[tid]/ {
  delete(@track[tid]);
  printf("X${S}%llu${S}%d${S}%d\\n", nsecs, tid, pid);
}`);
  for (const s of syscalls().filter((x) => opts.only === undefined || opts.only.includes(x.name))) {
    parts.push(`tracepoint:syscalls:sys_enter_${s.name} /@track[pid]/ {
  $ts = nsecs;${header(opts)}
  ${s.enter}
}
tracepoint:syscalls:sys_exit_${s.name} /@track[pid]/ {
  $ts = nsecs;
  $ret = args->ret;${header(opts)}
  ${s.exit}
}`);
  }
  // Module syscalls: no syscalls:sys_*_init_module tracepoints on kernels built without modules.
  parts.push(`tracepoint:raw_syscalls:sys_enter /@track[pid] && (args->id == ${NR_INIT_MODULE} || args->id == ${NR_FINIT_MODULE})/ {
  $ts = nsecs;${header(opts)}
  if (args->id == ${NR_INIT_MODULE}) { printf("E${S}%llu${S}%d${S}init_module${S}%llu${S}%s\\n", $ts, tid, args->args[1], str(uptr(args->args[2]), 128)); }
  else { printf("E${S}%llu${S}%d${S}finit_module${S}%d${S}%s${S}%d\\n", $ts, tid, args->args[0], str(uptr(args->args[1]), 128), args->args[2]); }
}
tracepoint:raw_syscalls:sys_exit /@track[pid] && (args->id == ${NR_INIT_MODULE} || args->id == ${NR_FINIT_MODULE})/ {
  $ts = nsecs;
  $ret = args->ret;${header(opts)}
  if (args->id == ${NR_INIT_MODULE}) { ${exitLine('init_module')} } else { ${exitLine('finit_module')} }
}
tracepoint:syscalls:sys_exit_getppid /pid == ${opts.markerPid}/ {
  printf("M${S}%llu\\n", nsecs);
}
END {
  printf("Z${S}end\\n");
  clear(@track);
}`);
  return parts.join('\n');
}

/**
 * Kernel layouts the program assumes, from `bpftrace -lv` output: `struct mount` starts with
 * mnt_hash (hlist_node), mnt_parent, mnt_mountpoint, then the vfsmount (offset 32); `struct
 * ovl_inode` holds four 8-byte words before vfs_inode and __upperdentry right after it; the
 * kernfs_node name is the pointer at offset 16 (after count, active, __parent/parent).
 * Returns the problems found (empty when the layouts match).
 */
export function layoutCheck(structs: Readonly<Record<string, string>>): string[] {
  const problems: string[] = [];
  const fields = (s: string): string[] =>
    (structs[s] ?? '')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('struct ' + s.replace(/^struct /, '') + ' {') && l !== '};');
  const mount = fields('mount');
  if (!/struct hlist_node mnt_hash;/.test(mount[0] ?? '') || !/mnt_parent;/.test(mount[1] ?? '') || !/mnt_mountpoint;/.test(mount[2] ?? '') || !/struct vfsmount mnt;/.test(mount[3] ?? '')) {
    problems.push(`struct mount layout changed: ${mount.slice(0, 4).join(' ')}`);
  }
  const kn = fields('kernfs_node');
  if (!/count;/.test(kn[0] ?? '') || !/active;/.test(kn[1] ?? '') || !/parent;/.test(kn[2] ?? '') || !/[ *]name;/.test(kn[3] ?? '')) {
    problems.push(`struct kernfs_node layout changed: ${kn.slice(0, 4).join(' ')}`);
  }
  const ovl = (structs['ovl_inode'] ?? '').replace(/\s+/g, ' ');
  if (ovl !== '' && !/ flags; struct inode vfs_inode; struct dentry \*__upperdentry;/.test(ovl)) {
    problems.push('struct ovl_inode layout changed: overlay upper-layer detection is off');
  }
  return problems;
}
