/* tests/snaputil.h — helpers for the snapshot tests: a private scratch directory, file sizes,
 * and the fake device (fakedev.h). */
#ifndef MFD_TEST_SNAPUTIL_H
#define MFD_TEST_SNAPUTIL_H

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include "fakedev.h"
#include "tutil.h"

static char snap_dir[512];

static inline void snap_dir_remove(void);

/* A fresh directory under $TMPDIR (or /tmp), removed with everything in it by snap_dir_remove,
 * which also runs at exit (a test that stops early leaves nothing behind). */
static inline void snap_dir_make(const char *name)
{
	const char *t = getenv("TMPDIR");
	snprintf(snap_dir, sizeof(snap_dir), "%s/mfd-%s-XXXXXX", t && t[0] ? t : "/tmp", name);
	if (!mkdtemp(snap_dir)) {
		perror("mkdtemp");
		exit(1);
	}
	atexit(snap_dir_remove);
}

static inline void snap_path(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", snap_dir, name);
}

/* Files in the scratch directory (to check that nothing was left behind). */
static inline int snap_dir_count(void)
{
	DIR *d = opendir(snap_dir);
	int n = 0;
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	if (d)
		closedir(d);
	return n;
}

static inline void snap_dir_remove(void)
{
	if (!snap_dir[0])
		return;
	DIR *d = opendir(snap_dir);
	struct dirent *e;
	char p[1024];
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", snap_dir, e->d_name);
		unlink(p);
	}
	if (d)
		closedir(d);
	rmdir(snap_dir);
	snap_dir[0] = '\0';
}

static inline uint64_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) ? 0 : (uint64_t)st.st_size;
}

static inline uint64_t file_alloc(const char *path)
{
	struct stat st;
	return stat(path, &st) ? 0 : (uint64_t)st.st_blocks * 512;
}

#endif
