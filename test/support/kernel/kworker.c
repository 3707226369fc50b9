/*
 * Test helper for the kernel observer and the Falco model (test infrastructure, not shipped).
 * Performs the system calls of the recorded scenarios in ../shared/falco-reference/recorded/ so the
 * model's alerts can be compared with what a real Falco printed. Loopback only, bounded in time
 * (every blocking step has an alarm), no effect outside its own sockets.
 *
 *   kworker arm <udp-port> <tcp-port>   rename (prctl PR_SET_NAME, $SIGTRIG_NAME or kworker/0:1),
 *                                       AF_PACKET socket + classic BPF filter (IPv4/UDP to
 *                                       udp-port), wait for one such packet, then bind+listen on
 *                                       127.0.0.1:tcp-port, accept one client, dup2 it onto 0/1/2
 *                                       and exec /bin/sh -c "echo emulated-shell"
 *   kworker magic <udp-port>            send one UDP packet to 127.0.0.1:udp-port
 *   kworker connect <tcp-port>          connect to 127.0.0.1:tcp-port, copy what arrives to stdout
 *   kworker capture <udp-port>          rename to tcpdump, packet socket + filter, read one packet
 *   kworker rawsock                     socket(AF_INET, SOCK_RAW|SOCK_CLOEXEC, IPPROTO_ICMP), close
 *   kworker beaconto <ip> <port> <n> <interval-ms> <jitter-%>
 *                                       n TCP connects, one every interval ± jitter
 *   kworker serve <port> <n>            listen on 0.0.0.0:port, accept and close n connections
 *   kworker unix <path>                 connect to a unix socket, send GET /_ping, print the reply
 *
 * Build: cc -static -O2 -o kworker kworker.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int die(const char *what) {
  fprintf(stderr, "kworker: %s: %s\n", what, strerror(errno));
  return 1;
}

static int packet_socket_with_filter(int udp_port) {
  struct sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 12),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IP, 0, 8),
      BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 23),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_UDP, 0, 6),
      BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 20),
      BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x1fff, 4, 0),
      BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, 14),
      BPF_STMT(BPF_LD | BPF_H | BPF_IND, 16),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)udp_port, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, 262144),
      BPF_STMT(BPF_RET | BPF_K, 0),
  };
  struct sock_fprog prog = {.len = sizeof(code) / sizeof(code[0]), .filter = code};
  int s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP));
  if (s < 0) return -1;
  if (setsockopt(s, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) < 0) return -1;
  return s;
}

static int wait_packet(int s) {
  char buf[2048];
  alarm(20);
  ssize_t n = recvfrom(s, buf, sizeof(buf), 0, NULL, NULL);
  alarm(0);
  return n < 0 ? -1 : 0;
}

static struct sockaddr_in loopback(int port) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

static int cmd_arm(int udp_port, int tcp_port) {
  const char *name = getenv("SIGTRIG_NAME");
  prctl(PR_SET_NAME, name ? name : "kworker/0:1", 0, 0, 0);
  int p = packet_socket_with_filter(udp_port);
  if (p < 0) return die("packet socket");
  if (wait_packet(p) < 0) return die("recvfrom");
  close(p);
  int l = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in a = loopback(tcp_port);
  if (bind(l, (struct sockaddr *)&a, sizeof(a)) < 0) return die("bind");
  if (listen(l, 1) < 0) return die("listen");
  alarm(20);
  int c = accept(l, NULL, NULL);
  alarm(0);
  if (c < 0) return die("accept");
  dup2(c, 0);
  dup2(c, 1);
  dup2(c, 2);
  execl("/bin/sh", "sh", "-c", "echo emulated-shell", (char *)NULL);
  return die("exec");
}

static int cmd_magic(int udp_port) {
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = loopback(udp_port);
  const char msg[] = "\x72\x55magic";
  if (sendto(s, msg, sizeof(msg) - 1, 0, (struct sockaddr *)&a, sizeof(a)) < 0) return die("sendto");
  close(s);
  return 0;
}

static int cmd_connect(int tcp_port) {
  struct sockaddr_in a = loopback(tcp_port);
  for (int i = 0; i < 100; i++) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(s, (struct sockaddr *)&a, sizeof(a)) == 0) {
      char buf[512];
      ssize_t n;
      alarm(10);
      while ((n = read(s, buf, sizeof(buf))) > 0) fwrite(buf, 1, (size_t)n, stdout);
      alarm(0);
      close(s);
      return 0;
    }
    close(s);
    usleep(100000);
  }
  return die("connect");
}

static int cmd_capture(int udp_port) {
  prctl(PR_SET_NAME, "tcpdump", 0, 0, 0);
  int p = packet_socket_with_filter(udp_port);
  if (p < 0) return die("packet socket");
  if (wait_packet(p) < 0) return die("recvfrom");
  close(p);
  return 0;
}

static int cmd_rawsock(void) {
  int s = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
  if (s < 0) return die("raw socket");
  close(s);
  return 0;
}

static int cmd_beacon(const char *ip, int port, int n, int interval_ms, int jitter) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) return die("address");
  srand((unsigned)time(NULL));
  if (n > 1000) n = 1000;
  for (int i = 0; i < n; i++) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    connect(s, (struct sockaddr *)&a, sizeof(a));
    close(s);
    int j = jitter > 0 ? (rand() % (2 * jitter + 1)) - jitter : 0;
    long ms = (long)interval_ms * (100 + j) / 100;
    if (i + 1 < n) usleep((useconds_t)(ms > 0 ? ms : 0) * 1000);
  }
  return 0;
}

static int cmd_serve(int port, int n) {
  int l = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  if (bind(l, (struct sockaddr *)&a, sizeof(a)) < 0) return die("bind");
  if (listen(l, 16) < 0) return die("listen");
  if (n > 1000) n = 1000;
  alarm(60);
  for (int i = 0; i < n; i++) {
    int c = accept(l, NULL, NULL);
    if (c < 0) return die("accept");
    close(c);
  }
  return 0;
}

static int cmd_unix(const char *path) {
  struct sockaddr_un a;
  memset(&a, 0, sizeof(a));
  a.sun_family = AF_UNIX;
  strncpy(a.sun_path, path, sizeof(a.sun_path) - 1);
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  if (connect(s, (struct sockaddr *)&a, sizeof(a)) < 0) return die("connect");
  const char req[] = "GET /_ping HTTP/1.0\r\n\r\n";
  if (write(s, req, sizeof(req) - 1) < 0) return die("write");
  char buf[512];
  ssize_t n;
  alarm(10);
  while ((n = read(s, buf, sizeof(buf))) > 0) fwrite(buf, 1, (size_t)n, stdout);
  alarm(0);
  close(s);
  return 0;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc >= 4 && strcmp(argv[1], "arm") == 0) return cmd_arm(atoi(argv[2]), atoi(argv[3]));
  if (argc >= 3 && strcmp(argv[1], "magic") == 0) return cmd_magic(atoi(argv[2]));
  if (argc >= 3 && strcmp(argv[1], "connect") == 0) return cmd_connect(atoi(argv[2]));
  if (argc >= 3 && strcmp(argv[1], "capture") == 0) return cmd_capture(atoi(argv[2]));
  if (argc >= 2 && strcmp(argv[1], "rawsock") == 0) return cmd_rawsock();
  if (argc >= 7 && strcmp(argv[1], "beaconto") == 0) return cmd_beacon(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), atoi(argv[6]));
  if (argc >= 4 && strcmp(argv[1], "serve") == 0) return cmd_serve(atoi(argv[2]), atoi(argv[3]));
  if (argc >= 3 && strcmp(argv[1], "unix") == 0) return cmd_unix(argv[2]);
  fprintf(stderr, "usage: kworker arm|magic|connect|capture|rawsock|beaconto|serve|unix ...\n");
  return 2;
}
