/* A STAND-IN for stellar-core, NOT stellar-core. stellar-core cannot be built on the bed's
 * machine (it needs clang >= 20 or g++ >= 14 and git dependencies no registry serves), so the
 * real-node trials run this under the operator's image name, stellar/stellar-core:<version>.
 * It follows stellar-core's command line only as far as the trials need:
 *   run --conf FILE   print that it is a stand-in, then FILE's bytes, then stay up until
 *                     SIGTERM/SIGINT (exit 0)
 *   no arguments      print a help text and exit 1, as stellar-core does
 * Anything else is refused with exit 2, so a trial never mistakes it for the real thing. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }

static int usage(FILE *out) {
  fputs("stellar-core STAND-IN (a test double of the bed, not stellar-core)\n"
        "usage: stellar-core run --conf FILE\n",
        out);
  return 1;
}

int main(int argc, char **argv) {
  const char *conf = NULL;
  if (argc < 2) return usage(stdout);
  if (strcmp(argv[1], "run") != 0) {
    fprintf(stderr, "stellar-core stand-in: unsupported command '%s'\n", argv[1]);
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
    fputs("stellar-core stand-in: run needs --conf FILE\n", stderr);
    return 2;
  }
  FILE *f = fopen(conf, "r");
  if (f == NULL) {
    fprintf(stderr, "stellar-core stand-in: cannot open %s: ", conf);
    perror(NULL);
    return 1;
  }
  printf("stellar-core stand-in: run --conf %s\n--- begin %s ---\n", conf, conf);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) fwrite(buf, 1, n, stdout);
  fclose(f);
  printf("--- end %s ---\n", conf);
  fflush(stdout);
  struct sigaction sa = {0};
  sa.sa_handler = stop;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  for (;;) pause();
}
