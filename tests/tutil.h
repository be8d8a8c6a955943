/* tests/tutil.h — tiny helpers shared by the test programs.  Each test is one program that exits
 * 0 (pass), 1 (fail) or 77 (skip). */
#ifndef MFD_TUTIL_H
#define MFD_TUTIL_H

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "multifd.h"

static int t_failures;

#define CHECK(cond)                                                                        \
	do {                                                                               \
		if (!(cond)) {                                                             \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
			t_failures++;                                                      \
		}                                                                          \
	} while (0)

#define CHECK_EQ(a, b)                                                                      \
	do {                                                                                \
		long long _a = (long long)(a), _b = (long long)(b);                         \
		if (_a != _b) {                                                             \
			fprintf(stderr, "%s:%d: CHECK_EQ failed: %s = %lld, %s = %lld\n", __FILE__, \
				__LINE__, #a, _a, #b, _b);                                  \
			t_failures++;                                                       \
		}                                                                           \
	} while (0)

/* Check an error code, printing both names on mismatch. */
#define CHECK_CODE(got, want)                                                               \
	do {                                                                                \
		int _g = (got), _w = (want);                                                \
		if (_g != _w) {                                                             \
			fprintf(stderr, "%s:%d: %s = %d (%s), want %d (%s)\n", __FILE__, __LINE__, \
				#got, _g, mfd_strerror(_g), _w, mfd_strerror(_w));          \
			t_failures++;                                                       \
		}                                                                           \
	} while (0)

#define SKIP(...)                                   \
	do {                                        \
		printf("skip: " __VA_ARGS__);       \
		printf("\n");                       \
		exit(77);                           \
	} while (0)

static inline int t_done(const char *name)
{
	if (t_failures) {
		fprintf(stderr, "%s: %d check(s) failed\n", name, t_failures);
		return 1;
	}
	printf("%s: ok\n", name);
	return 0;
}

static inline void *t_map(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	return p;
}

/* Deterministic pseudo-random fill; every fourth page left zero so zero pages are exercised. */
static inline void t_fill(void *mem, size_t len, uint64_t seed)
{
	uint64_t *w = mem, x = seed | 1;
	for (size_t i = 0; i < len / 8; i++) {
		if (((i * 8) / 4096) % 4 == 3) {
			w[i] = 0;
			continue;
		}
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		w[i] = x;
	}
}

/* CLOCK_MONOTONIC in nanoseconds. */
static inline uint64_t t_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Cancel a session from another thread `ms` milliseconds after canceller_start (a negative ms:
 * never; `twice`: a second cancel at once, which must be harmless).
 *
 *     struct canceller c = { .s = s, .ms = 80 };
 *     canceller_start(&c);  ... mfd_session_run(s, &err) ...  canceller_join(&c); */
struct canceller {
	struct mfd_session *s;
	int ms;
	bool twice;
	bool running;		/* a thread was started (joined by canceller_join) */
	pthread_t t;
};

static inline void *canceller_thread(void *arg)
{
	struct canceller *c = arg;
	usleep((useconds_t)c->ms * 1000);
	mfd_session_cancel(c->s);
	if (c->twice)
		mfd_session_cancel(c->s);
	return NULL;
}

static inline void canceller_start(struct canceller *c)
{
	c->running = c->ms >= 0;
	if (c->running)
		pthread_create(&c->t, NULL, canceller_thread, c);
}

static inline void canceller_join(struct canceller *c)
{
	if (c->running)
		pthread_join(c->t, NULL);
	c->running = false;
}

static inline uint64_t t_rand(uint64_t *state)
{
	uint64_t x = *state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *state = x;
}

#endif
