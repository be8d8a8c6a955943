/* fuzz/replay — main() for the plain (non-libFuzzer) build of the fuzz targets.
 *
 * Each argument is a file or a directory.  A file is run once through LLVMFuzzerTestOneInput;
 * a directory has every regular file in it run, in name order (so runs are reproducible).
 * A missing argument, an unreadable file, or a directory with no regular file is an error
 * (exit 1), so that a corpus that went missing is noticed by `make test` instead of silently
 * replaying nothing.  Each input is copied into a buffer of exactly its size, so an
 * AddressSanitizer build catches reads past the end the same way libFuzzer would.
 *
 * The libFuzzer build (make fuzz-libfuzzer) does not link this file: libFuzzer supplies main().
 * Define MFD_FUZZ_NO_MAIN to compile it without main() anyway. */
#ifndef MFD_FUZZ_NO_MAIN
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path, unsigned long *count)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	size_t cap = 4096, len = 0;
	uint8_t *buf = malloc(cap);
	int rc = 0;
	for (;;) {
		if (!buf) {
			fprintf(stderr, "replay: %s: out of memory\n", path);
			rc = -1;
			break;
		}
		size_t n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0) {
			if (ferror(f)) {
				fprintf(stderr, "replay: %s: read error\n", path);
				rc = -1;
			}
			break;
		}
		if (len == cap) {
			cap *= 2;
			uint8_t *nb = realloc(buf, cap);
			if (!nb)
				free(buf);
			buf = nb;
		}
	}
	fclose(f);
	if (rc == 0) {
		/* Exact-size copy: any read past the input's end is a heap overflow under ASan. */
		uint8_t *exact = malloc(len ? len : 1);
		if (!exact) {
			fprintf(stderr, "replay: %s: out of memory\n", path);
			rc = -1;
		} else {
			memcpy(exact, buf, len);
			LLVMFuzzerTestOneInput(exact, len);
			free(exact);
			(*count)++;
		}
	}
	free(buf);
	return rc;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_dir(const char *dir, unsigned long *count)
{
	DIR *d = opendir(dir);
	if (!d) {
		fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			char **nn = realloc(names, cap * sizeof(*names));
			if (!nn) {
				rc = -1;
				break;
			}
			names = nn;
		}
		if (!(names[n] = strdup(e->d_name))) {
			rc = -1;
			break;
		}
		n++;
	}
	closedir(d);
	if (rc == 0)
		qsort(names, n, sizeof(*names), cmp_names);
	size_t ran = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		size_t plen = strlen(dir) + 1 + strlen(names[i]) + 1;
		char *path = malloc(plen);
		if (!path) {
			rc = -1;
			break;
		}
		snprintf(path, plen, "%s/%s", dir, names[i]);
		struct stat st;
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			rc = run_file(path, count);
			ran++;
		}
		free(path);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	if (rc == 0 && ran == 0) {
		fprintf(stderr, "replay: %s: no inputs in the directory\n", dir);
		rc = -1;
	}
	return rc;
}

int main(int argc, char **argv)
{
	unsigned long count = 0;
	if (argc < 2) {
		fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
		return 1;
	}
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) != 0) {
			fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
			return 1;
		}
		int rc = S_ISDIR(st.st_mode) ? run_dir(argv[i], &count) : run_file(argv[i], &count);
		if (rc)
			return 1;
	}
	printf("replayed %lu inputs\n", count);
	return 0;
}
#endif /* MFD_FUZZ_NO_MAIN */
