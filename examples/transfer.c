/* examples/transfer — move a buffer from one process to another with libmultifd.
 *
 * The parent fills a buffer and is the source; a child process is the destination: it listens
 * on a loopback TCP port of its choosing, tells the parent where through a pipe, receives the
 * buffer over four channels and checks it.  Only the public header is used; build it against an
 * installed library with
 *
 *     cc transfer.c $(pkg-config --cflags --libs multifd) -o transfer
 *     ./transfer [MiB]          (default 64)
 *
 * Exit status 0 when the destination's buffer equals the source's. */
#define _DEFAULT_SOURCE	/* MAP_ANONYMOUS */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <multifd.h>

#define PAGE 4096

static void *buffer(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

/* What both sides expect the buffer to hold: a digest of each page, in order. */
static uint64_t digest(const uint8_t *p, size_t len)
{
	uint64_t d = 0;
	for (size_t off = 0; off < len; off += PAGE)
		d = mfd_digest(p + off, PAGE, d);
	return d;
}

static int destination(size_t len, int to_parent)
{
	struct mfd_error err = { .channel = -1 };
	char uri[256] = "";
	uint8_t *mem = buffer(len);	/* fresh, all zero: say so, zero pages need no write */
	struct mfd_session *s = mfd_session_new(MFD_INCOMING);
	int rc = mem && s ? 0 : -1;
	if (rc == 0)
		rc = mfd_ram_block_add(s, "buffer", mem, len, PAGE, MFD_BLOCK_ZEROED);
	if (rc >= 0)
		rc = mfd_session_listen(s, "tcp:127.0.0.1:0", &err);
	if (rc == 0)
		rc = mfd_session_local_uri(s, uri, sizeof(uri));
	if (write(to_parent, uri, sizeof(uri)) != (ssize_t)sizeof(uri) || rc < 0)
		rc = rc < 0 ? rc : -1;
	if (rc == 0)
		rc = mfd_session_run(s, &err);
	if (rc < 0)
		fprintf(stderr, "destination: %s\n", err.code ? err.msg : mfd_strerror(rc));
	uint64_t d = rc == 0 ? digest(mem, len) : 0;
	if (write(to_parent, &d, sizeof(d)) != (ssize_t)sizeof(d))
		rc = -1;
	mfd_session_free(s);
	return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	size_t len = (argc > 1 ? strtoul(argv[1], NULL, 10) : 64) << 20;
	if (len == 0) {
		fprintf(stderr, "usage: transfer [MiB]\n");
		return 2;
	}
	printf("libmultifd %s (built against %d.%d.%d)\n", mfd_version(), MFD_VERSION_MAJOR,
	       MFD_VERSION_MINOR, MFD_VERSION_PATCH);
	int fds[2];
	if (pipe(fds))
		return 1;
	pid_t pid = fork();
	if (pid == 0) {
		close(fds[0]);
		_exit(destination(len, fds[1]));
	}
	close(fds[1]);

	uint8_t *mem = buffer(len);
	if (!mem)
		return 1;
	for (size_t i = 0; i < len / sizeof(uint64_t); i++)	/* something to move */
		((uint64_t *)mem)[i] = i * 0x9E3779B97F4A7C15ull;
	char uri[256];
	uint64_t theirs = 0;
	struct mfd_error err = { .channel = -1 };
	struct mfd_session *s = mfd_session_new(MFD_OUTGOING);
	int rc = read(fds[0], uri, sizeof(uri)) == (ssize_t)sizeof(uri) && uri[0] && s ? 0 : -1;
	if (rc == 0)
		rc = mfd_session_set(s, MFD_OPT_CHANNELS, 4);
	if (rc == 0)
		rc = mfd_ram_block_add(s, "buffer", mem, len, PAGE, 0);
	if (rc >= 0)
		rc = mfd_session_connect(s, uri, &err);
	if (rc == 0)
		rc = mfd_session_run(s, &err);
	if (rc < 0)
		fprintf(stderr, "source: %s\n", err.code ? err.msg : mfd_strerror(rc));
	struct mfd_stats st;
	mfd_session_get_stats(s, &st);
	mfd_session_free(s);
	if (read(fds[0], &theirs, sizeof(theirs)) != (ssize_t)sizeof(theirs))
		rc = -1;
	int status;
	waitpid(pid, &status, 0);
	bool same = rc == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
		    theirs == digest(mem, len);
	printf("moved %zu MiB to %s over %u channels in %llu ms: %s\n", len >> 20, uri, st.channels,
	       (unsigned long long)st.total_ms, same ? "identical" : "DIFFERENT");
	return same ? 0 : 1;
}
