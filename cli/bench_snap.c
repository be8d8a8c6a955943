/* cli/bench_snap — `bench --save PATH` and `bench --restore PATH`: mapped-ram snapshots in one
 * process.  The save fills the memory and writes it (stopped, or live with --dirty), with a
 * "bench" device section holding the digest of the memory as saved (taken at the stop in a live
 * save); the restore reads it back into fresh memory (eagerly, or mapped with --lazy) and checks
 * the digest.  --baseline times a plain sequential write or read of the same bytes in the same
 * directory. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "bench.h"
#include "progress.h"

/* Open the snapshot file, run the session (timed from the open: validation and setup count),
 * take its stats and free it.  rc: the setup's result so far (nothing runs unless 0). */
static int run_file_session(struct mfd_session *s, int rc, const struct bench_opts *o,
			    const char *path, const char *what, double *wall, struct mfd_stats *st)
{
	struct mfd_error err;
	mfd_error_clear(&err);
	double t0 = cli_now_s();
	if (rc == 0)
		rc = mfd_session_open_file(s, path, &err);
	if (rc == 0)
		rc = bench_run(s, o, what, &err);
	*wall = cli_now_s() - t0;
	if (s)
		mfd_session_get_stats(s, st);
	mfd_session_free(s);
	if (rc) {
		char msg[MFD_ERROR_MSG_MAX + 32];
		cli_file_errmsg(&err, rc, msg, sizeof(msg));
		fprintf(stderr, "multifd bench: %s: %s\n", what, msg);
	}
	return rc;
}

#define BENCH_DEV_LEN 32	/* "MFDBENCH", memory bytes, digest, page size; little-endian */

/* The "bench" device: the digest of the memory as saved travels in the snapshot. */
struct bench_dev {
	uint8_t *mem;
	uint64_t len;
	bool at_stop;		/* save: take the digest in the save callback (live: at the stop) */
	uint64_t digest;	/* save: of the memory saved; restore: as loaded */
	uint64_t mem_bytes;	/* restore: as loaded */
	bool loaded;
};

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static long bench_dev_save(void *opaque, void *buf, size_t cap)
{
	struct bench_dev *d = opaque;
	if (cap < BENCH_DEV_LEN)
		return BENCH_DEV_LEN;
	if (d->at_stop)	/* the guest is stopped now: this is the memory the save ends with */
		d->digest = cli_digest(d->mem, d->len, PAGE, 2);
	uint8_t *b = buf;
	memcpy(b, "MFDBENCH", 8);
	put_le64(b + 8, d->len);
	put_le64(b + 16, d->digest);
	put_le64(b + 24, PAGE);
	return BENCH_DEV_LEN;
}

static int bench_dev_load(void *opaque, const void *buf, size_t len, uint32_t version)
{
	struct bench_dev *d = opaque;
	const uint8_t *b = buf;
	if (len != BENCH_DEV_LEN || memcmp(b, "MFDBENCH", 8) || get_le64(b + 24) != PAGE)
		return -EINVAL;
	d->mem_bytes = get_le64(b + 8);
	d->digest = get_le64(b + 16);
	d->loaded = true;
	return 0;
}

static const struct mfd_device_ops bench_dev_ops = { bench_dev_save, bench_dev_load };

static void print_snap(const struct bench_opts *o, const char *mode, const char *path, bool ok,
		       const struct mfd_stats *st, double wall_s, double base_mib_s, bool verified,
		       uint64_t digest, uint64_t mem_bytes, uint64_t sweeps)
{
	struct stat sb;
	uint64_t fbytes = 0, falloc = 0;
	if (stat(path, &sb) == 0) {
		fbytes = (uint64_t)sb.st_size;
		falloc = (uint64_t)sb.st_blocks * 512;
	}
	double mib_s = wall_s > 0 ? (double)mem_bytes / (1 << 20) / wall_s : 0;
	const char *state = ok ? mfd_status_name(st->status) : "failed";
	if (o->json) {
		char stats[8192];
		mfd_stats_json(st, stats, sizeof(stats));
		printf("{\"schema\":%d,\"mode\":\"%s\",\"status\":\"%s\",\"mem_bytes\":%llu,"
		       "\"file_bytes\":%llu,\"file_alloc_bytes\":%llu,\"channels\":%u,"
		       "\"direct_io\":%s,\"lazy\":%s,\"wall_ms\":%.1f,\"memory_mib_s\":%.1f,",
		       MFD_JSON_SCHEMA, mode, state, (unsigned long long)mem_bytes,
		       (unsigned long long)fbytes, (unsigned long long)falloc, o->channels,
		       o->direct_io ? "true" : "false", o->lazy ? "true" : "false", wall_s * 1000,
		       mib_s);
		if (!strcmp(mode, "save"))
			printf("\"fill\":\"%s\",", o->fill);
		else
			printf("\"dest_prealloc\":%s,", o->lazy || o->fresh_dest ? "false" : "true");
		if (o->baseline)
			printf("\"baseline_mib_s\":%.1f,\"ratio\":%.3f,", base_mib_s,
			       base_mib_s > 0 ? mib_s / base_mib_s : 0.0);
		if (o->dirty)
			printf("\"dirty_bytes\":%llu,\"dirty_threads\":%u,\"writer_sweeps\":%llu,",
			       (unsigned long long)o->dirty, o->dirty_threads,
			       (unsigned long long)sweeps);
		printf("\"verified\":%s,\"digest\":\"%016llx\",\"migration\":%s}\n",
		       verified ? "true" : "false", (unsigned long long)digest, stats);
		return;
	}
	printf("status       %s\n", state);
	printf("%-12s %s (%.1f MiB, %llu bytes allocated)\n", mode, path, (double)fbytes / (1 << 20),
	       (unsigned long long)falloc);
	printf("memory       %.1f MiB, %u workers%s%s\n", (double)mem_bytes / (1 << 20), o->channels,
	       o->direct_io ? ", O_DIRECT" : "", o->lazy ? ", lazy" : "");
	printf("time         %.1f ms (library %llu ms)\n", wall_s * 1000,
	       (unsigned long long)st->total_ms);
	printf("memory rate  %.1f MiB/s\n", mib_s);
	progress_channels(stdout, st);
	if (!strcmp(mode, "restore"))
		printf("ready        %llu ms\n", (unsigned long long)st->ready_ms);
	if (o->baseline)
		printf("baseline     %.1f MiB/s sequential %s (ratio %.3f)\n", base_mib_s,
		       !strcmp(mode, "save") ? "write + fsync" : "read",
		       base_mib_s > 0 ? mib_s / base_mib_s : 0.0);
	printf("pages        %llu with data, %llu zero\n", (unsigned long long)st->normal_pages,
	       (unsigned long long)st->zero_pages);
	if (o->dirty)
		printf("live         %llu passes, downtime %llu ms, throttle max %u%%, %llu writer "
		       "sweeps\n", (unsigned long long)st->rounds, (unsigned long long)st->downtime_ms,
		       st->throttle_pct_max, (unsigned long long)sweeps);
	printf("verified     %s\n", verified ? "yes (digest of the saved memory matches)"
				      : !strcmp(mode, "save") ? "no (run --restore)" : "NO");
}

int bench_snap_save(const struct bench_opts *o)
{
	struct mfd_stats st = { 0 };
	struct mfd_error err;
	mfd_error_clear(&err);
	uint8_t *mem = cli_alloc_mem(o->mem);
	if (!mem || cli_fill(mem, o->mem, o->fill, 2, BENCH_FILL_SEED)) {
		fprintf(stderr, "multifd bench: cannot allocate %llu bytes\n", (unsigned long long)o->mem);
		cli_free_mem(mem, o->mem);
		return 1;
	}
	struct bench_dev dev = { .mem = mem, .len = o->mem, .at_stop = o->dirty != 0 };
	if (!o->dirty)
		dev.digest = cli_digest(mem, o->mem, PAGE, 2);	/* static memory: before timing */
	struct dirtier dz = { .mem = mem, .pages = o->dirty / PAGE, .n = o->dirty_threads };
	struct mfd_session *s = mfd_session_new(MFD_SAVE);
	int rc = s ? 0 : -ENOMEM;
	if (rc == 0)
		rc = mfd_session_set(s, MFD_OPT_CHANNELS, o->channels);
	if (rc == 0)
		rc = mfd_session_set(s, MFD_OPT_BATCH_PAGES, o->batch);
	if (rc == 0)
		rc = mfd_session_set(s, MFD_OPT_DIRECT_IO, o->direct_io);
	if (rc == 0 && o->no_page_checksums)
		rc = mfd_session_set(s, MFD_OPT_PAGE_CHECKSUMS, 0);
	if (rc == 0 && o->max_bandwidth)
		rc = mfd_session_set(s, MFD_OPT_MAX_BANDWIDTH, o->max_bandwidth);
	if (rc == 0 && (rc = mfd_ram_block_add(s, "ram0", mem, o->mem, PAGE, 0)) > 0)
		rc = 0;
	if (rc == 0 && (rc = mfd_device_add(s, "bench", 0, 1, &bench_dev_ops, &dev)) > 0)
		rc = 0;
	if (rc == 0 && o->dirty) {
		rc = bench_live_start(s, o, &dz);
	}
	/* An old file at PATH would be replaced at the end of the save, and dropping it (its page
	 * cache above all) takes time that belongs to the old file, not to saving: remove it before
	 * the clock starts, so both sides of the ratio write a new file. */
	if (rc == 0 && unlink(o->save_path) && errno != ENOENT)
		fprintf(stderr, "multifd bench: removing the old %s: %s\n", o->save_path,
			strerror(errno));
	double wall = 0;
	rc = run_file_session(s, rc, o, o->save_path, "save", &wall, &st);
	bench_live_stop(&dz);	/* stopped at the switchover: the memory is still what was saved */
	double base = 0;
	if (rc == 0 && o->baseline) {
		char bpath[4096];
		snprintf(bpath, sizeof(bpath), "%s.baseline-%d", o->save_path, (int)getpid());
		base = bench_baseline_io(bpath, mem, o->mem, 0, true, o->direct_io);
		unlink(bpath);
	}
	print_snap(o, "save", o->save_path, rc == 0, &st, wall, base, false, dev.digest, o->mem,
		   __atomic_load_n(&dz.sweeps, __ATOMIC_RELAXED));
	cli_free_mem(mem, o->mem);
	return rc ? 1 : 0;
}

int bench_snap_restore(const struct bench_opts *o)
{
	struct mfd_snapshot_info info;
	struct mfd_stats st = { 0 };
	struct mfd_error err;
	mfd_error_clear(&err);
	int rc = mfd_snapshot_inspect(o->restore_path, &info, &err);
	if (rc) {
		char msg[MFD_ERROR_MSG_MAX + 32];
		cli_file_errmsg(&err, rc, msg, sizeof(msg));
		fprintf(stderr, "multifd bench: %s: %s\n", o->restore_path, msg);
		mfd_snapshot_info_free(&info);
		return 1;
	}
	/* Fresh memory per block, aligned to the block's page size. */
	uint8_t *map[MFD_MAX_BLOCKS] = { 0 }, *host[MFD_MAX_BLOCKS] = { 0 };
	struct bench_dev dev = { 0 };
	struct mfd_session *s = mfd_session_new(MFD_RESTORE);
	rc = s ? 0 : -ENOMEM;
	for (uint32_t i = 0; rc == 0 && i < info.nblocks; i++) {
		const struct mfd_snapshot_block *b = &info.blocks[i];
		map[i] = cli_alloc_mem(b->length + b->page_size);
		if (!map[i]) {
			rc = -ENOMEM;
			break;
		}
		if (!o->lazy && !o->fresh_dest &&	/* a lazy restore maps the file there */
		    (rc = cli_prealloc(map[i], b->length + b->page_size)) < 0)
			break;
		host[i] = (uint8_t *)(((uintptr_t)map[i] + b->page_size - 1) &
				      ~(uintptr_t)(b->page_size - 1));
		if ((rc = mfd_ram_block_add(s, b->name, host[i], b->length, b->page_size,
					    MFD_BLOCK_ZEROED)) > 0)
			rc = 0;
	}
	for (uint32_t i = 0; rc == 0 && i < info.ndevices; i++)
		if (strcmp(info.devices[i].name, "bench") || info.devices[i].instance) {
			fprintf(stderr, "multifd bench: %s: device %s.%u is not the bench's\n",
				o->restore_path, info.devices[i].name, info.devices[i].instance);
			rc = MFD_EDEVICE;
		}
	if (rc == 0 && info.ndevices && (rc = mfd_device_add(s, "bench", 0, 1, &bench_dev_ops, &dev)) > 0)
		rc = 0;
	if (rc == 0)
		rc = mfd_session_set(s, MFD_OPT_CHANNELS, o->channels);
	if (rc == 0)
		rc = mfd_session_set(s, MFD_OPT_DIRECT_IO, o->direct_io);
	if (rc == 0)
		rc = mfd_session_set(s, MFD_OPT_LAZY, o->lazy);
	if (rc == 0 && o->max_bandwidth)
		rc = mfd_session_set(s, MFD_OPT_MAX_BANDWIDTH, o->max_bandwidth);
	double wall = 0;
	rc = run_file_session(s, rc, o, o->restore_path, "restore", &wall, &st);
	/* Verify: the restored memory against the digest the save recorded. */
	uint64_t digest = 0;
	bool verified = false;
	if (rc == 0 && dev.loaded && info.nblocks == 1 && dev.mem_bytes == info.blocks[0].length) {
		digest = cli_digest(host[0], info.blocks[0].length, PAGE, 2);
		verified = digest == dev.digest;
	} else if (rc == 0) {
		fprintf(stderr, "multifd bench: %s was not written by bench --save: nothing to verify\n",
			o->restore_path);
	}
	double base = 0;
	if (rc == 0 && o->baseline && info.nblocks) {
		uint8_t *bm = cli_alloc_mem(info.mem_bytes);
		if (bm && !o->lazy && !o->fresh_dest && cli_prealloc(bm, info.mem_bytes) < 0) {
			cli_free_mem(bm, info.mem_bytes);
			bm = NULL;	/* no baseline figure, as when the allocation fails */
		}
		if (bm)
			base = bench_baseline_io(o->restore_path, bm, info.mem_bytes, info.blocks[0].pages_offset,
					   false, o->direct_io);
		cli_free_mem(bm, info.mem_bytes);
	}
	print_snap(o, "restore", o->restore_path, rc == 0, &st, wall, base, verified, digest,
		   info.mem_bytes, 0);
	if (rc == 0 && !verified && dev.loaded)
		fprintf(stderr, "multifd bench: digest %016llx, the save recorded %016llx\n",
			(unsigned long long)digest, (unsigned long long)dev.digest);
	for (uint32_t i = 0; i < info.nblocks; i++)
		if (map[i])
			cli_free_mem(map[i], info.blocks[i].length + info.blocks[i].page_size);
	mfd_snapshot_info_free(&info);
	return rc == 0 && verified ? 0 : 1;
}
