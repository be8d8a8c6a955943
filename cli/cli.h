/* cli — the multifd command: a table of subcommands, one file each.  Uses only multifd.h. */
#ifndef MFD_CLI_H
#define MFD_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "multifd.h"

struct cli_cmd {
	const char *name;
	int (*main)(int argc, char **argv);	/* argv[0] is the command name */
	const char *summary;
	void (*usage)(FILE *out);
};

/* Parse "512M", "2G", "4096", "1.5G" (binary units K/M/G/T).  Returns 0 or -1. */
int cli_parse_size(const char *s, uint64_t *out);
int cli_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out);
/* Anonymous memory for guest RAM or bench buffers (THP advised).  NULL on failure. */
void *cli_alloc_mem(uint64_t len);
void cli_free_mem(void *p, uint64_t len);
int cli_prealloc(void *p, uint64_t len);
/* Fill memory: "random", "zero" or "pattern", with nthreads threads.  What a page holds depends
 * only on its index (from p, in 4 KiB pages), the fill and the seed. */
int cli_fill(void *p, uint64_t len, const char *fill, unsigned nthreads, uint64_t seed);
/* The first nwords 64-bit words of page pg as cli_fill(fill, seed) wrote them. */
void cli_fill_words(uint64_t *w, size_t nwords, uint64_t pg, const char *fill, uint64_t seed);
/* Per-page digest sum of a memory range, with nthreads threads (what verify compares). */
uint64_t cli_digest(const void *p, uint64_t len, uint32_t page_size, unsigned nthreads);
double cli_now_s(void);
/* Errors about a snapshot file, said for a file: mfd_strerror(code), except that a file that
 * ends early is "file truncated" (the library's name speaks of packets); and err's message
 * (or the code's name when it has none) with that wording, into out. */
const char *cli_file_strerror(int code);
void cli_file_errmsg(const struct mfd_error *err, int code, char *out, size_t cap);

int cmd_bench(int argc, char **argv);
void cmd_bench_usage(FILE *out);
int cmd_vm(int argc, char **argv);
void cmd_vm_usage(FILE *out);
int cmd_ctl(int argc, char **argv);
void cmd_ctl_usage(FILE *out);
int cmd_demo(int argc, char **argv);
void cmd_demo_usage(FILE *out);
int cmd_inspect(int argc, char **argv);
void cmd_inspect_usage(FILE *out);

/* Control-protocol client helpers (cmd_ctl.c). */
int ctl_connect(const char *path);
/* Send one request line, with fds[0..nfds) passed along (SCM_RIGHTS), and read the reply line
 * into buf (NUL-terminated, without its newline), waiting up to 10 s.  0 or -errno. */
int ctl_call(int fd, const char *req, const int *fds, unsigned nfds, char *buf, size_t cap);

#endif
