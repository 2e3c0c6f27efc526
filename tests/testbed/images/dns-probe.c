/* The bed's DNS probe: resolves each name given, from inside a pod, the way stellar-core does
 * (getaddrinfo, so through the pod's /etc/resolv.conf, i.e. the cluster's DNS Service), and
 * prints one line per name: "NAME ADDRESS..." or "NAME ERROR message". Exits 0 when every name
 * resolved, 1 otherwise. A `host:port` is looked up by its host part. */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
  int failed = 0;
  for (int i = 1; i < argc; i++) {
    char host[256];
    snprintf(host, sizeof host, "%s", argv[i]);
    char *colon = strrchr(host, ':');
    if (colon != NULL) *colon = '\0';
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0) {
      printf("%s ERROR %s\n", argv[i], gai_strerror(rc));
      failed = 1;
      continue;
    }
    printf("%s", argv[i]);
    for (struct addrinfo *a = res; a != NULL; a = a->ai_next) {
      char ip[INET_ADDRSTRLEN];
      inet_ntop(AF_INET, &((struct sockaddr_in *)a->ai_addr)->sin_addr, ip, sizeof ip);
      printf(" %s", ip);
    }
    printf("\n");
    freeaddrinfo(res);
  }
  fflush(stdout);
  return failed;
}
