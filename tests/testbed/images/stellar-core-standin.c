/* A STAND-IN for stellar-core, NOT stellar-core. stellar-core cannot be built on the bed's
 * machine (it needs clang >= 20 or g++ >= 14 and git dependencies no registry serves), so the
 * real-node trials run this under the operator's image name, stellar/stellar-core:<version>.
 * It follows stellar-core's command line only as far as the trials need:
 *   run --conf FILE [--console]
 *                     print that it is a stand-in, then FILE's bytes, then serve the admin
 *                     HTTP port (below) until SIGTERM/SIGINT (exit 0)
 *   new-db --conf FILE [--console], upgrade-db --conf FILE [--console]
 *                     what SDF's chart (charts/core, core.initScript) runs in its core-init
 *                     container: print one line saying the stand-in keeps no database, exit 0
 *                     (exit 1 when FILE cannot be opened)
 *   no arguments      print a help text and exit 1, as stellar-core does
 * Anything else is refused with exit 2, so a trial never mistakes it for the real thing.
 *
 * THE ADMIN HTTP PORT, copied from stellar-core at commit
 * a9b8613218e141ddb89d621e5f04d4c75a149d36 (2026-08-05): src/main/CommandHandler.cpp
 * (routes, safeRouter, connect, peers, fileNotFound), lib/http/server.cpp (handle_request,
 * url_decode, parseParams), lib/http/reply.cpp and connection.cpp (status lines, headers,
 * stock replies, one request per connection), src/overlay/PeerBareAddress.cpp (resolve),
 * src/overlay/OverlayManagerImpl.cpp (connectTo), lib/json/jsoncpp.cpp (StyledWriter), and
 * asio's socket_ops.ipp/error.ipp (getaddrinfo error texts).
 *   - Port: a top-level `HTTP_PORT = N` line of FILE (default 11626; 0: no admin port), on
 *     127.0.0.1, or 0.0.0.0 when FILE has a top-level `PUBLIC_HTTP_PORT = true`. With a
 *     top-level `RUN_STANDALONE = true`, connect and peers do not exist (as in stellar-core).
 *   - Every answer: `HTTP/1.0 <code> <reason>`, Content-Length, Content-Type, then (added by the
 *     stand-in; stellar-core sends no such header, its HTTP/1.0 answer already means it)
 *     `Connection: close`; the connection is closed after one answer. The method is not
 *     looked at (stellar-core ignores it too). A request line that cannot be parsed, a URI
 *     whose %-escape is bad, or a request over 64 KiB: 400 with asio's stock page
 *     `<html><head><title>Bad Request</title></head><body><h1>400 Bad Request</h1></body></html>`.
 *   - GET /connect?peer=HOST&port=PORT: 200 application/json `Connect to: HOST:PORT` (not JSON:
 *     stellar-core's own text). HOST:PORT must match stellar-core's
 *     `^(?:(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})|([[:alnum:].-]+))(?::(\d{1,5}))?$`, else
 *     `{"exception": "Cannot parse peer address 'HOST:PORT'"}`. HOST is resolved at once with
 *     getaddrinfo (numeric only for a dotted quad); failure: `{"exception": "Could not
 *     resolve 'HOST:PORT': <asio's text>"}`, e.g. `Host not found (authoritative)` for a name
 *     that does not exist, `Host not found (non-authoritative), try again later` for EAI_AGAIN;
 *     no IPv4 result: `... : no IPv4 addresses found`; port 0 or > 65535: `... : port out of
 *     range`. Without both parameters: `Must specify a peer and port:
 *     connect&peer=PEER&port=PORT`. All with status 200. The first IPv4 address and the port,
 *     `IP:PORT`, go into the stand-in's table unless already there.
 *   - GET /peers: 200 application/json, jsoncpp's StyledWriter output of
 *     {"authenticated_peers": {"inbound", "outbound"}, "pending_peers": {"inbound",
 *     "outbound"}}; an empty list is `null`, as in stellar-core. SIMPLIFIED: the stand-in dials
 *     nobody, so it authenticates nobody; each `IP:PORT` of its table is listed under
 *     pending_peers.outbound (where stellar-core lists a peer it has started to dial after
 *     connect, as Peer::toString() = `IP:PORT`) and stays there (stellar-core drops it when the
 *     dial fails or moves it to authenticated_peers once the handshake is done).
 *     `fullkeys` and `compact` are accepted and make no difference.
 *   - GET /info: 200 application/json, SIMPLIFIED (see cmd_info): StyledWriter's
 *     {"info": {"build": "stellar-core stand-in (not stellar-core)", "network": <the conf's
 *     NETWORK_PASSPHRASE>, "peers": {"authenticated_count": 0, "pending_count": <table size>},
 *     "state": "Synced!"}}, so that SDF's chart's default readinessProbe
 *     (`curl http://localhost:11626/info | grep '"state" : "Synced!"'`) passes once booted.
 *   - Other commands stellar-core has (droppeer, metrics, ...): 200 application/json
 *     `{"exception": "not implemented by the stellar-core stand-in"}`.
 *   - Booting: for the first STANDIN_BOOTING_SECONDS seconds (env, default 0) every command of
 *     stellar-core (connect and peers included) answers 200 application/json
 *     `{"error": "Core is booting, try again later"}`, exactly as safeRouter does while the node
 *     is not ready; nothing is added to the table then.
 *   - Anything else (no command, unknown command): 404 text/html, fileNotFound's page
 *     `<b>Welcome to stellar-core!</b><p>Supported HTTP commands are listed in the <a href="..."
 *     >docs</a> as well as in the man pages.</p><p>Have fun!</p>` (booting or not, as there).
 *   - STANDIN_ADMIN_DOWN_SECONDS (env, default 0): the admin port is not listened on for the
 *     first N seconds after start (connections are refused); then it is.
 * STDOUT RECORD of the admin port, one line each, flushed at once (`kubectl logs` reads them):
 *   stellar-core stand-in: admin down for N s            (only when N > 0, at start)
 *   stellar-core stand-in: admin listening on ADDR:PORT   (when the port opens)
 *   stellar-core stand-in: admin METHOD TARGET -> CODE FIRSTLINE
 * one per request: METHOD and TARGET as sent (TARGET undecoded; bytes outside printable ASCII
 * shown as `?`; cut at 1024 bytes), CODE the status sent, FIRSTLINE the answer's body up to its
 * first newline (cut at 200 bytes). A request that is not HTTP logs `admin - - -> 400 ...`; a
 * connection closed or idle for 5 s before a full request logs nothing. Example:
 *   stellar-core stand-in: admin GET /connect?peer=v2-0.v2.ns.svc.cluster.local&port=11625 -> 200 Connect to: v2-0.v2.ns.svc.cluster.local:11625
 * One connection at a time, single-threaded, poll() based; a client has 5 s to send its
 * request. SIGTERM and SIGINT exit 0 at once. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_REQUEST (64 * 1024)
#define MAX_PEERS 256
#define BODY_MAX (MAX_PEERS * 32 + 1024)

static void stop(int sig) { (void)sig; _exit(0); }

static int usage(FILE *out) {
  fputs("stellar-core STAND-IN (a test double of the bed, not stellar-core)\n"
        "usage: stellar-core run --conf FILE [--console]\n"
        "       stellar-core new-db|upgrade-db --conf FILE [--console]\n",
        out);
  return 1;
}

/* --- the conf file: a simple scan of top-level lines ------------------------------------ */

/* The value of top-level KEY (before any [table] header) in conf, copied into out. */
static int conf_value(const char *conf, const char *key, char *out, size_t outlen) {
  size_t klen = strlen(key);
  const char *p = conf;
  while (*p) {
    const char *eol = strchr(p, '\n');
    size_t len = eol ? (size_t)(eol - p) : strlen(p);
    const char *s = p;
    while (s < p + len && (*s == ' ' || *s == '\t')) s++;
    if (s < p + len && *s == '[') return 0;
    if ((size_t)(p + len - s) > klen && strncmp(s, key, klen) == 0 &&
        (s[klen] == ' ' || s[klen] == '\t' || s[klen] == '=')) {
      s += klen;
      while (s < p + len && (*s == ' ' || *s == '\t')) s++;
      if (s < p + len && *s == '=') {
        s++;
        while (s < p + len && (*s == ' ' || *s == '\t')) s++;
        size_t n = 0;
        while (s < p + len && *s != '#' && *s != '\r' && n + 1 < outlen) out[n++] = *s++;
        while (n > 0 && (out[n - 1] == ' ' || out[n - 1] == '\t')) n--;
        out[n] = '\0';
        return 1;
      }
    }
    if (!eol) break;
    p = eol + 1;
  }
  return 0;
}

/* --- time --------------------------------------------------------------------------------- */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long env_seconds(const char *name) {
  const char *v = getenv(name);
  if (v == NULL || *v == '\0') return 0;
  char *end;
  long n = strtol(v, &end, 10);
  if (*end != '\0' || n < 0) {
    fprintf(stderr, "stellar-core stand-in: %s=%s is not a number of seconds; using 0\n", name, v);
    return 0;
  }
  return n;
}

/* --- the peer table ------------------------------------------------------------------------- */

static char peers[MAX_PEERS][32];
static int npeers;

static void add_peer(const char *ip_port) {
  for (int i = 0; i < npeers; i++)
    if (strcmp(peers[i], ip_port) == 0) return; /* connectToImpl: already connected */
  if (npeers == MAX_PEERS) return;               /* canAcceptOutboundPeer refusing */
  snprintf(peers[npeers++], sizeof peers[0], "%s", ip_port);
}

/* --- stellar-core's HTTP server ---------------------------------------------------------- */

static const char BAD_REQUEST[] =
    "<html><head><title>Bad Request</title></head><body><h1>400 Bad Request</h1></body></html>";
static const char WELCOME[] =
    "<b>Welcome to stellar-core!</b><p>Supported HTTP commands are listed in the <a href=\""
    "https://github.com/stellar/stellar-core/blob/master/docs/software/commands.md#http-commands"
    "\">docs</a> as well as in the man pages.</p><p>Have fun!</p>";
static const char BOOTING[] = "{\"error\": \"Core is booting, try again later\"}";
static const char NOT_IMPLEMENTED[] = "{\"exception\": \"not implemented by the stellar-core stand-in\"}";

/* CommandHandler's routes: the overlay ones exist only when RUN_STANDALONE is false. */
static const char *const OVERLAY_ROUTES[] = {
    "bans", "connect", "droppeer", "peers", "quorum", "scp", "stopsurvey", "getsurveyresult",
    "startsurveycollecting", "stopsurveycollecting", "surveytopologytimesliced", "unban", NULL};
static const char *const ROUTES[] = {
    "clearmetrics", "info", "ll", "logrotate", "manualclose", "metrics", "tx", "upgrades",
    "banaccounts", "unbanaccounts", "dumpproposedsettings", "self-check", "sorobaninfo", NULL};

static int in_list(const char *const *list, const char *s) {
  for (; *list; list++)
    if (strcmp(*list, s) == 0) return 1;
  return 0;
}

/* server::url_decode: '%' and two characters read by `istream >> std::hex` (leading blanks
 * skipped, at least one hex digit), '+' as a blank. 0 when the escape is bad. */
static int url_decode(const char *in, char *out, size_t outlen) {
  size_t n = 0, len = strlen(in);
  for (size_t i = 0; i < len; i++) {
    char c;
    if (in[i] == '%') {
      if (i + 3 > len) return 0;
      const char *h = in + i + 1;
      int k = 0, value = 0, digits = 0;
      while (k < 2 && isspace((unsigned char)h[k])) k++;
      while (k < 2 && isxdigit((unsigned char)h[k])) {
        value = value * 16 + (isdigit((unsigned char)h[k]) ? h[k] - '0' : (tolower((unsigned char)h[k]) - 'a' + 10));
        k++;
        digits++;
      }
      if (digits == 0) return 0;
      c = (char)value;
      i += 2;
    } else if (in[i] == '+') {
      c = ' ';
    } else {
      c = in[i];
    }
    if (n + 1 >= outlen) return 0;
    out[n++] = c;
  }
  out[n] = '\0';
  return 1;
}

/* server::parseParams, with its quirks: a pair is stored at each '&' (empty name or value
 * included), the last one only when both its name and value are non-empty; '?' is skipped. */
struct param { char name[256]; char value[1024]; int set; };

static void parse_params(const char *params, struct param *want, int nwant) {
  char name[256] = "", value[1024] = "";
  size_t nn = 0, vn = 0;
  int building_name = 1;
  for (const char *c = params;; c++) {
    int end = *c == '\0';
    if (!end && *c == '?') continue;
    if (!end && *c == '=') { building_name = 0; continue; }
    if (end || *c == '&') {
      name[nn] = value[vn] = '\0';
      if (!end || (nn > 0 && vn > 0)) {
        for (int i = 0; i < nwant; i++)
          if (strcmp(want[i].name, name) == 0) {
            snprintf(want[i].value, sizeof want[i].value, "%s", value);
            want[i].set = 1;
          }
      }
      if (end) break;
      building_name = 1;
      nn = vn = 0;
      continue;
    }
    if (building_name) { if (nn + 1 < sizeof name) name[nn++] = *c; }
    else if (vn + 1 < sizeof value) value[vn++] = *c;
  }
}

/* asio's text for a getaddrinfo error (translate_addrinfo_error, then its categories). */
static const char *gai_text(int rc, int saved_errno) {
  switch (rc) {
  case EAI_AGAIN: return "Host not found (non-authoritative), try again later";
  case EAI_BADFLAGS: return strerror(EINVAL);
  case EAI_FAIL: return "A non-recoverable error occurred during database lookup";
  case EAI_FAMILY: return strerror(EAFNOSUPPORT);
  case EAI_MEMORY: return strerror(ENOMEM);
  case EAI_NONAME:
#ifdef EAI_ADDRFAMILY
  case EAI_ADDRFAMILY:
#endif
#if defined(EAI_NODATA) && (EAI_NODATA != EAI_NONAME)
  case EAI_NODATA:
#endif
    return "Host not found (authoritative)";
  case EAI_SERVICE: return "Service not found";
  case EAI_SOCKTYPE: return "Socket type not supported";
  default: return strerror(saved_errno);
  }
}

static int is_dotted_quad(const char *s, size_t len) {
  int groups = 0;
  size_t i = 0;
  while (groups < 4) {
    size_t d = 0;
    while (i < len && isdigit((unsigned char)s[i]) && d < 3) { i++; d++; }
    if (d == 0) return 0;
    groups++;
    if (groups < 4) {
      if (i >= len || s[i] != '.') return 0;
      i++;
    }
  }
  return i == len;
}

/* CommandHandler::connect, with PeerBareAddress::resolve and OverlayManager::connectTo. */
static void cmd_connect(const char *params, char *body, size_t blen) {
  struct param p[2] = {{.name = "peer"}, {.name = "port"}};
  parse_params(params, p, 2);
  if (!p[0].set || !p[1].set) {
    snprintf(body, blen, "Must specify a peer and port: connect&peer=PEER&port=PORT");
    return;
  }
  char addr[2100];
  snprintf(addr, sizeof addr, "%s:%s", p[0].value, p[1].value);
  /* The regex: host = dotted quad or [[:alnum:].-]+, then optionally ':' and 1-5 digits. */
  const char *colon = strchr(addr, ':');
  size_t hlen = colon ? (size_t)(colon - addr) : strlen(addr);
  int ok = hlen > 0;
  for (size_t i = 0; ok && i < hlen; i++)
    ok = isalnum((unsigned char)addr[i]) || addr[i] == '.' || addr[i] == '-';
  const char *port_s = NULL;
  if (ok && colon) {
    port_s = colon + 1;
    size_t d = strlen(port_s);
    ok = d >= 1 && d <= 5;
    for (size_t i = 0; ok && i < d; i++) ok = isdigit((unsigned char)port_s[i]);
  }
  if (!ok) {
    snprintf(body, blen, "{\"exception\": \"Cannot parse peer address '%s'\"}", addr);
    return;
  }
  char host[2100];
  snprintf(host, sizeof host, "%.*s", (int)hlen, addr);
  struct addrinfo hints = {0}, *res = NULL;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  hints.ai_flags = is_dotted_quad(host, hlen) ? AI_NUMERICHOST : AI_V4MAPPED;
  errno = 0;
  int rc = getaddrinfo(host, NULL, &hints, &res);
  if (rc != 0) {
    snprintf(body, blen, "{\"exception\": \"Could not resolve '%s': %s\"}", addr, gai_text(rc, errno));
    return;
  }
  char ip[INET_ADDRSTRLEN] = "";
  for (struct addrinfo *a = res; a; a = a->ai_next)
    if (a->ai_family == AF_INET) {
      inet_ntop(AF_INET, &((struct sockaddr_in *)a->ai_addr)->sin_addr, ip, sizeof ip);
      break;
    }
  freeaddrinfo(res);
  if (ip[0] == '\0') {
    snprintf(body, blen, "{\"exception\": \"Could not resolve '%s': no IPv4 addresses found\"}", addr);
    return;
  }
  long port = 11625; /* PeerBareAddress::resolve's default port */
  if (port_s) {
    port = atol(port_s);
    if (port <= 0 || port > 65535) {
      snprintf(body, blen, "{\"exception\": \"Could not resolve '%s': port out of range\"}", addr);
      return;
    }
  }
  char ip_port[32];
  snprintf(ip_port, sizeof ip_port, "%s:%ld", ip, port);
  add_peer(ip_port);
  snprintf(body, blen, "Connect to: %s", addr);
}

/* jsoncpp's StyledWriter for a list of strings at indent `ind` after `"key" : `: null when
 * empty; one line `[ "a", "b" ]` when shorter than its right margin (74), else one per line. */
static void styled_list(char *body, size_t blen, size_t *n, char list[][32], int count, int ind) {
#define PUT(...) (*n += (size_t)snprintf(body + *n, *n < blen ? blen - *n : 0, __VA_ARGS__), *n = *n < blen ? *n : blen - 1)
  if (count == 0) { PUT("null"); return; }
  int line = 4 + (count - 1) * 2;
  for (int i = 0; i < count; i++) line += (int)strlen(list[i]) + 2;
  if (count * 3 < 74 && line < 74) {
    PUT("[ ");
    for (int i = 0; i < count; i++) PUT("%s\"%s\"", i ? ", " : "", list[i]);
    PUT(" ]");
  } else {
    PUT("[");
    for (int i = 0; i < count; i++) PUT("\n%*s\"%s\"%s", ind + 3, "", list[i], i + 1 < count ? "," : "");
    PUT("\n%*s]", ind, "");
  }
#undef PUT
}

/* NETWORK_PASSPHRASE of the conf file, for /info. */
static char network[512];

/* CommandHandler::info (ApplicationImpl::getJsonInfo), SIMPLIFIED to the fields a probe reads:
 * `build` names the stand-in, `state` is "Synced!" (the stand-in has no network to sync with;
 * SDF's chart's default readinessProbe greps `"state" : "Synced!"`), `network` and the peer
 * counts are the stand-in's. No ledger, no quorum, no startedOn. */
static void cmd_info(char *body, size_t blen) {
  char esc[1100];
  size_t e = 0;
  for (const char *c = network; *c && e + 3 < sizeof esc; c++) {
    if (*c == '"' || *c == '\\') esc[e++] = '\\';
    esc[e++] = *c;
  }
  esc[e] = '\0';
  snprintf(body, blen,
           "{\n   \"info\" : {\n      \"build\" : \"stellar-core stand-in (not stellar-core)\",\n"
           "      \"network\" : \"%s\",\n      \"peers\" : {\n         \"authenticated_count\" : 0,\n"
           "         \"pending_count\" : %d\n      },\n      \"state\" : \"Synced!\"\n   }\n}\n",
           esc, npeers);
}

/* CommandHandler::peers: root.toStyledString(). */
static void cmd_peers(char *body, size_t blen) {
  size_t n = 0;
  n += (size_t)snprintf(body, blen,
                        "{\n   \"authenticated_peers\" : {\n      \"inbound\" : null,\n"
                        "      \"outbound\" : null\n   },\n   \"pending_peers\" : {\n"
                        "      \"inbound\" : null,\n      \"outbound\" : ");
  styled_list(body, blen, &n, peers, npeers, 6);
  snprintf(body + n, blen - n, "\n   }\n}\n");
}

struct reply { int code; const char *type; char body[BODY_MAX]; };

/* server::handle_request with CommandHandler's routes. */
static void handle(const char *uri, int booting, int standalone, struct reply *r) {
  static char path[MAX_REQUEST];
  if (!url_decode(uri, path, sizeof path)) {
    r->code = 400;
    r->type = "text/html";
    snprintf(r->body, sizeof r->body, "%s", BAD_REQUEST);
    return;
  }
  char *command = path[0] == '/' ? path + 1 : path;
  char *q = strchr(command, '?');
  const char *params = "";
  static char params_buf[MAX_REQUEST];
  if (q) {
    snprintf(params_buf, sizeof params_buf, "%s", q);
    params = params_buf;
    *q = '\0';
  }
  int known = in_list(ROUTES, command) || (!standalone && in_list(OVERLAY_ROUTES, command));
  if (!known) {
    r->code = 404;
    r->type = "text/html";
    snprintf(r->body, sizeof r->body, "%s", WELCOME);
    return;
  }
  r->code = 200;
  r->type = "application/json";
  if (booting) snprintf(r->body, sizeof r->body, "%s", BOOTING);
  else if (strcmp(command, "connect") == 0) cmd_connect(params, r->body, sizeof r->body);
  else if (strcmp(command, "peers") == 0) cmd_peers(r->body, sizeof r->body);
  else if (strcmp(command, "info") == 0) cmd_info(r->body, sizeof r->body);
  else snprintf(r->body, sizeof r->body, "%s", NOT_IMPLEMENTED);
}

static const char *reason(int code) {
  return code == 200 ? "OK" : code == 404 ? "Not Found" : "Bad Request";
}

static void log_request(const char *method, const char *target, const struct reply *r) {
  char t[1025], m[65], first[201];
  size_t i;
  for (i = 0; target[i] && i < sizeof t - 1; i++) t[i] = (target[i] > 32 && target[i] < 127) ? target[i] : '?';
  t[i] = '\0';
  for (i = 0; method[i] && i < sizeof m - 1; i++) m[i] = (method[i] > 32 && method[i] < 127) ? method[i] : '?';
  m[i] = '\0';
  for (i = 0; r->body[i] && r->body[i] != '\n' && i < sizeof first - 1; i++) first[i] = r->body[i];
  first[i] = '\0';
  printf("stellar-core stand-in: admin %s %s -> %d %s\n", m, t, r->code, first);
  fflush(stdout);
}

/* Reads one request head (until a blank line) within 5 s: its length, 0 when the client went
 * away or idled before sending a whole head, -1 when it is too big. */
static long read_request(int fd, char *buf, size_t cap) {
  size_t n = 0;
  double deadline = now_s() + 5.0;
  for (;;) {
    int left = (int)((deadline - now_s()) * 1000);
    if (left <= 0) return 0;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int pr = poll(&pfd, 1, left);
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) return 0;
    ssize_t got = recv(fd, buf + n, cap - 1 - n, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return 0; /* gone before a whole request: nothing to answer */
    n += (size_t)got;
    buf[n] = '\0';
    /* memmem, not strstr: a NUL byte in the request must not hide its end. */
    if (memmem(buf, n, "\r\n\r\n", 4) || memmem(buf, n, "\n\n", 2)) return (long)n;
    if (n >= cap - 1) return -1;
  }
}

static int is_token_char(char c) {
  return c > 32 && c < 127 && strchr("()<>@,;:\\\"/[]?={} \t", c) == NULL;
}

static void serve_one(int fd, int booting, int standalone) {
  static char buf[MAX_REQUEST + 1];
  static struct reply r;
  long n = read_request(fd, buf, sizeof buf);
  if (n == 0) return;
  char method[65] = "-", target[MAX_REQUEST] = "-";
  int good = 0;
  if (n > 0) {
    /* request_parser: METHOD SP URI SP HTTP/d+.d+ CRLF */
    char *sp1 = strchr(buf, ' ');
    char *eol = strpbrk(buf, "\r\n");
    if (sp1 && eol && sp1 < eol && sp1 > buf && (size_t)(sp1 - buf) < sizeof method) {
      int tok = 1;
      for (char *c = buf; c < sp1; c++) tok = tok && is_token_char(*c);
      char *sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
      if (tok && sp2 && sp2 > sp1 + 1) {
        int major, minor, used = 0;
        char v[32];
        size_t vl = (size_t)(eol - sp2 - 1);
        if (vl < sizeof v) {
          memcpy(v, sp2 + 1, vl);
          v[vl] = '\0';
          if (sscanf(v, "HTTP/%d.%d%n", &major, &minor, &used) == 2 && (size_t)used == vl) {
            int ctl = 0;
            for (char *c = sp1 + 1; c < sp2; c++) ctl = ctl || (unsigned char)*c < 32 || *c == 127;
            if (!ctl) {
              good = 1;
              snprintf(method, sizeof method, "%.*s", (int)(sp1 - buf), buf);
              snprintf(target, sizeof target, "%.*s", (int)(sp2 - sp1 - 1), sp1 + 1);
            }
          }
        }
      }
    }
  }
  if (good) {
    handle(target, booting, standalone, &r);
  } else {
    r.code = 400;
    r.type = "text/html";
    snprintf(r.body, sizeof r.body, "%s", BAD_REQUEST);
  }
  char head[256];
  size_t blen = strlen(r.body);
  int hl = snprintf(head, sizeof head,
                    "HTTP/1.0 %d %s\r\nContent-Length: %zu\r\nContent-Type: %s\r\nConnection: close\r\n\r\n",
                    r.code, reason(r.code), blen, r.type);
  if (send(fd, head, (size_t)hl, MSG_NOSIGNAL) == hl) {
    size_t off = 0;
    while (off < blen) {
      ssize_t w = send(fd, r.body + off, blen - off, MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) break;
      off += (size_t)w;
    }
  }
  log_request(method, target, &r);
  /* connection::do_write: shut down both ways after the answer. Drain what the client still
   * sends for a moment first, so that closing does not reset the connection under it. */
  shutdown(fd, SHUT_WR);
  double until = now_s() + 0.5;
  char sink[512];
  for (;;) {
    int left = (int)((until - now_s()) * 1000);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (left <= 0 || poll(&pfd, 1, left) <= 0) break;
    if (recv(fd, sink, sizeof sink, 0) <= 0) break;
  }
}

static int open_admin(const char *addr, int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
  inet_pton(AF_INET, addr, &sa.sin_addr);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 128) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static int admin_loop(const char *conf_text) {
  char v[64];
  long port = 11626;
  if (conf_value(conf_text, "HTTP_PORT", v, sizeof v)) {
    char *end;
    port = strtol(v, &end, 10);
    if (*end != '\0' || port < 0 || port > 65535) {
      fprintf(stderr, "stellar-core stand-in: HTTP_PORT = %s is not a port\n", v);
      return 1;
    }
  }
  const char *addr = conf_value(conf_text, "PUBLIC_HTTP_PORT", v, sizeof v) && strcmp(v, "true") == 0
                         ? "0.0.0.0" : "127.0.0.1";
  int standalone = conf_value(conf_text, "RUN_STANDALONE", v, sizeof v) && strcmp(v, "true") == 0;
  char pass[sizeof network];
  if (conf_value(conf_text, "NETWORK_PASSPHRASE", pass, sizeof pass)) {
    size_t l = strlen(pass);
    if (l >= 2 && pass[0] == '"' && pass[l - 1] == '"') {
      /* a TOML basic string: \" and \\ unescaped (the only escapes a passphrase needs) */
      size_t o = 0;
      for (size_t i = 1; i + 1 < l && o + 1 < sizeof network; i++) {
        if (pass[i] == '\\' && i + 2 < l) i++;
        network[o++] = pass[i];
      }
      network[o] = '\0';
    } else {
      snprintf(network, sizeof network, "%s", pass);
    }
  }
  double start = now_s();
  long booting_s = env_seconds("STANDIN_BOOTING_SECONDS");
  long down_s = env_seconds("STANDIN_ADMIN_DOWN_SECONDS");
  if (port == 0) {
    printf("stellar-core stand-in: HTTP_PORT = 0: no admin port\n");
    fflush(stdout);
    for (;;) pause();
  }
  if (down_s > 0) {
    printf("stellar-core stand-in: admin down for %ld s\n", down_s);
    fflush(stdout);
    while (now_s() - start < (double)down_s) {
      struct timespec ts = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};
      nanosleep(&ts, NULL);
    }
  }
  int lfd = open_admin(addr, (int)port);
  if (lfd < 0) {
    fprintf(stderr, "stellar-core stand-in: cannot listen on %s:%ld: %s\n", addr, port, strerror(errno));
    return 1;
  }
  printf("stellar-core stand-in: admin listening on %s:%ld\n", addr, port);
  fflush(stdout);
  for (;;) {
    int cfd = accept(lfd, NULL, NULL);
    if (cfd < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE ||
          errno == ENOBUFS || errno == ENOMEM || errno == EPROTO) {
        if (errno != EINTR && errno != ECONNABORTED) {
          struct timespec ts = {.tv_sec = 0, .tv_nsec = 50 * 1000 * 1000};
          nanosleep(&ts, NULL);
        }
        continue;
      }
      fprintf(stderr, "stellar-core stand-in: accept: %s\n", strerror(errno));
      return 1;
    }
    serve_one(cfd, now_s() - start < (double)booting_s, standalone);
    close(cfd);
  }
}

/* --- main ------------------------------------------------------------------------------------ */

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "r");
  if (f == NULL) return NULL;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap + 1);
  size_t got;
  while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
    n += got;
    if (n == cap) {
      char *nb = realloc(buf, cap * 2 + 1);
      if (nb == NULL) { free(buf); buf = NULL; break; }
      buf = nb;
      cap *= 2;
    }
  }
  fclose(f);
  if (buf) buf[n] = '\0';
  *len = n;
  return buf;
}

int main(int argc, char **argv) {
  const char *conf = NULL;
  if (argc < 2) return usage(stdout);
  const char *cmd = argv[1];
  int run = strcmp(cmd, "run") == 0;
  int db = strcmp(cmd, "new-db") == 0 || strcmp(cmd, "upgrade-db") == 0;
  if (!run && !db) {
    fprintf(stderr, "stellar-core stand-in: unsupported command '%s'\n", cmd);
    usage(stderr);
    return 2;
  }
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--conf") == 0 && i + 1 < argc) conf = argv[++i];
    else if (strcmp(argv[i], "--console") != 0) {
      fprintf(stderr, "stellar-core stand-in: unsupported option '%s'\n", argv[i]);
      return 2;
    }
  }
  if (conf == NULL) {
    fprintf(stderr, "stellar-core stand-in: %s needs --conf FILE\n", cmd);
    return 2;
  }
  struct sigaction sa = {0};
  sa.sa_handler = stop;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  size_t len = 0;
  char *text = read_file(conf, &len);
  if (text == NULL) {
    fprintf(stderr, "stellar-core stand-in: cannot open %s: ", conf);
    perror(NULL);
    return 1;
  }
  if (db) {
    printf("stellar-core stand-in: %s --conf %s (the stand-in keeps no database; nothing done)\n", cmd, conf);
    fflush(stdout);
    return 0;
  }
  printf("stellar-core stand-in: run --conf %s\n--- begin %s ---\n", conf, conf);
  fwrite(text, 1, len, stdout);
  printf("--- end %s ---\n", conf);
  fflush(stdout);
  return admin_loop(text);
}
