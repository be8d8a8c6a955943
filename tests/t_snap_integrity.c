/* t_snap_integrity — snapshot files that lie: page checksums and temporaries.
 *
 * 1. Page checksums are on by default: a clean file verifies (every present page checked, the
 *    digest too), and 20 random byte flips in page data, each in a fresh copy, are every one
 *    found by mfd_snapshot_verify and by an eager restore, with the block and page named.
 *    Without checksums (MFD_OPT_PAGE_CHECKSUMS 0) the file says so and verify checks no page.
 * 2. A save killed with SIGKILL leaves its temporary (PATH.multifd-tmp.XXXXXX); inspect calls it
 *    the unfinished temporary it is (MFD_EINCOMPLETE); the next save to PATH removes it, but
 *    never the temporary of a save still running. */
#include <signal.h>
#include <sys/wait.h>
#include "mapped/snapfile.h"
#include "snaputil.h"

#define PS 4096u
#define LEN (4u << 20)

static uint8_t *mem;

static int save_to(const char *path, bool checksums, int64_t max_bw)
{
	struct mfd_session *s = mfd_session_new(MFD_SAVE);
	mfd_ram_block_add(s, "ram", mem, LEN, PS, 0);
	mfd_session_set(s, MFD_OPT_CHANNELS, 2);
	mfd_session_set(s, MFD_OPT_VERIFY, 1);
	mfd_session_set(s, MFD_OPT_PAGE_CHECKSUMS, checksums);
	if (max_bw)
		mfd_session_set(s, MFD_OPT_MAX_BANDWIDTH, max_bw);
	struct mfd_error err;
	mfd_error_clear(&err);
	int rc = mfd_session_open_file(s, path, &err);
	if (rc == 0)
		rc = mfd_session_run(s, &err);
	if (rc)
		fprintf(stderr, "save: %s\n", err.msg);
	mfd_session_free(s);
	return rc;
}

static int restore_from(const char *path, struct mfd_error *err)
{
	uint8_t *dst = t_map(LEN);
	struct mfd_session *s = mfd_session_new(MFD_RESTORE);
	mfd_ram_block_add(s, "ram", dst, LEN, PS, MFD_BLOCK_ZEROED);
	mfd_error_clear(err);
	int rc = mfd_session_open_file(s, path, err);
	if (rc == 0)
		rc = mfd_session_run(s, err);
	if (rc == 0)
		CHECK(memcmp(dst, mem, LEN) == 0);
	mfd_session_free(s);
	munmap(dst, LEN);
	return rc;
}

static void copy(const char *from, const char *to)
{
	int a = open(from, O_RDONLY), b = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	static uint8_t buf[1 << 16];
	ssize_t n;
	while ((n = read(a, buf, sizeof(buf))) > 0)
		CHECK(write(b, buf, (size_t)n) == n);
	close(a);
	close(b);
}

static void checksums(void)
{
	char good[600], work[600], plain[600];
	snap_path(good, sizeof(good), "good.snap");
	snap_path(work, sizeof(work), "work.snap");
	snap_path(plain, sizeof(plain), "plain.snap");
	CHECK_CODE(save_to(good, true, 0), 0);
	struct mfd_snapshot_info info;
	struct mfd_error err;
	mfd_error_clear(&err);
	CHECK_CODE(mfd_snapshot_verify(good, &info, &err), 0);
	CHECK(info.page_checksums && info.pages_ok && info.digest_ok);
	CHECK_EQ(info.pages_checked, info.pages_present);
	CHECK_EQ(info.pages_bad, 0);
	uint64_t present = info.pages_present, pages_offset = info.blocks[0].pages_offset;
	CHECK(present > 100 && present < LEN / PS);	/* t_fill leaves every fourth page zero */
	mfd_snapshot_info_free(&info);

	/* The present pages, to pick flips from. */
	int fd = open(good, O_RDONLY);
	struct mfd__chan *c = mfd__chan_file_new(fd, -1);
	struct mfd__snap_meta m;
	CHECK_CODE(mfd__snap_read(c, &m, NULL, 0, &err), 0);
	uint64_t *bits = calloc(mfd__bitmap_words(LEN / PS), 8);
	CHECK_CODE(mfd__snap_read_bitmap(c, &m.blocks[0], bits, &err), 0);
	mfd__snap_meta_free(&m);
	mfd__chan_free(c);

	uint64_t rng = 0x5eed;
	for (int flip = 0; flip < 20; flip++) {
		uint64_t page;
		do
			page = t_rand(&rng) % (LEN / PS);
		while (!mfd__bit_test(bits, page));
		uint64_t off = pages_offset + page * PS + t_rand(&rng) % PS;
		uint8_t bit = (uint8_t)(1u << (t_rand(&rng) % 8));
		copy(good, work);
		int w = open(work, O_RDWR);
		uint8_t b;
		CHECK(pread(w, &b, 1, (off_t)off) == 1);
		b ^= bit;
		CHECK(pwrite(w, &b, 1, (off_t)off) == 1);
		close(w);
		char want[64];
		snprintf(want, sizeof(want), "block 'ram' page %llu ", (unsigned long long)page);
		mfd_error_clear(&err);
		CHECK_CODE(mfd_snapshot_verify(work, &info, &err), MFD_ECHECKSUM);
		CHECK(strstr(err.msg, want) != NULL);
		CHECK_EQ(info.pages_bad, 1);
		CHECK(!info.pages_ok && !info.digest_ok);
		mfd_snapshot_info_free(&info);
		CHECK_CODE(restore_from(work, &err), MFD_ECHECKSUM);
		CHECK(strstr(err.msg, want) != NULL);
		if (!strstr(err.msg, want))
			fprintf(stderr, "flip %d at page %llu: %s\n", flip, (unsigned long long)page,
				err.msg);
	}
	free(bits);

	/* Without checksums: the file says so; verify has only the digest. */
	CHECK_CODE(save_to(plain, false, 0), 0);
	mfd_error_clear(&err);
	CHECK_CODE(mfd_snapshot_verify(plain, &info, &err), 0);
	CHECK(!info.page_checksums && !info.pages_ok && info.digest_ok);
	CHECK_EQ(info.pages_checked, 0);
	mfd_snapshot_info_free(&info);
	CHECK_CODE(restore_from(plain, &err), 0);
	unlink(good);
	unlink(work);
	unlink(plain);
}

/* A save in a child process, throttled so that it runs long enough to be killed. */
static pid_t slow_save(const char *path)
{
	pid_t pid = fork();
	if (pid == 0) {
		save_to(path, true, 4 << 20);	/* 4 MB/s: about a second */
		_exit(0);
	}
	return pid;
}

/* Files in the scratch directory named like a temporary of `path`. */
static int temps(const char *path, char *name, size_t len)
{
	const char *base = strrchr(path, '/') + 1;
	char prefix[300];
	snprintf(prefix, sizeof(prefix), "%s%s", base, MFD_SNAP_TEMP_SUFFIX);
	DIR *d = opendir(snap_dir);
	struct dirent *e;
	int n = 0;
	while ((e = readdir(d)))
		if (!strncmp(e->d_name, prefix, strlen(prefix))) {
			n++;
			if (name)
				snprintf(name, len, "%s/%s", snap_dir, e->d_name);
		}
	closedir(d);
	return n;
}

static void wait_for_temp(const char *path)
{
	for (int i = 0; i < 200 && temps(path, NULL, 0) == 0; i++)
		usleep(5000);
}

static void temporaries(void)
{
	char path[600], tmp[900];
	snap_path(path, sizeof(path), "vm.snap");
	/* Killed mid-save: its temporary stays behind, and says what it is. */
	pid_t pid = slow_save(path);
	wait_for_temp(path);
	usleep(100000);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	CHECK_EQ(temps(path, tmp, sizeof(tmp)), 1);
	struct mfd_snapshot_info info;
	struct mfd_error err;
	mfd_error_clear(&err);
	CHECK_CODE(mfd_snapshot_inspect(tmp, &info, &err), MFD_EINCOMPLETE);
	CHECK(strstr(err.msg, "temporary file of a save that did not finish") != NULL);
	mfd_snapshot_info_free(&info);
	CHECK(access(path, F_OK) != 0);	/* the target was never touched */
	/* The next save to the path removes it. */
	CHECK_CODE(save_to(path, true, 0), 0);
	CHECK_EQ(temps(path, NULL, 0), 0);
	mfd_error_clear(&err);
	CHECK_CODE(mfd_snapshot_verify(path, &info, &err), 0);
	mfd_snapshot_info_free(&info);
	/* A save still running keeps its temporary while another saves to the same path. */
	pid = slow_save(path);
	wait_for_temp(path);
	CHECK_CODE(save_to(path, true, 0), 0);
	CHECK_EQ(temps(path, NULL, 0), 1);	/* the running one's */
	int status = 0;
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status));
	CHECK_EQ(temps(path, NULL, 0), 0);	/* it finished and renamed it */
	mfd_error_clear(&err);
	CHECK_CODE(mfd_snapshot_verify(path, &info, &err), 0);
	mfd_snapshot_info_free(&info);
	unlink(path);
}

int main(void)
{
	snap_dir_make("t-snap-integrity");
	mem = t_map(LEN);
	t_fill(mem, LEN, 99);
	checksums();
	temporaries();
	munmap(mem, LEN);
	snap_dir_remove();
	return t_done("t_snap_integrity");
}
