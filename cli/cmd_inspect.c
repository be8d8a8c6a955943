/* cli/cmd_inspect — `multifd inspect PATH [--verify] [--json]`: what a snapshot file holds, and
 * whether every part of it checks out.  One library call (mfd_snapshot_inspect, or with --verify
 * mfd_snapshot_verify, which also reads every page; neither trusts the file), then print.  Exit status: 0 valid, 1 invalid or unreadable (what could be read is still
 * printed), 2 usage. */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "cli.h"
#include "ctl_json.h"

void cmd_inspect_usage(FILE *out)
{
	fprintf(out,
		"usage: multifd inspect PATH [--verify] [--json]\n"
		"\n"
		"Check a snapshot file (header, block table, page bitmaps, device sections,\n"
		"trailer, every checksum) and show what it holds: its blocks with the pages\n"
		"present in each, and its device sections.  The file is not trusted.\n"
		"\n"
		"  --verify  also read every page: each against its checksum (files saved with\n"
		"            page checksums, the default) and all against the saved digest\n"
		"            (files saved with verify); the first bad page is named\n"
		"  --json    print one JSON object on stdout\n"
		"\n"
		"Exit status: 0 when the file is valid, 1 when it is not (or cannot be read),\n"
		"2 for a usage error.\n");
}

/* Names come from the file (and the path from the user): valid UTF-8 is printed as it is,
 * control characters, backslashes and bytes of invalid sequences as \xNN. */
static void put_text(FILE *o, const char *s)
{
	while (*s) {
		size_t n = ctl_utf8_len(s);
		if (n == 0 || (unsigned char)*s < 0x20 || *s == 0x7f || *s == '\\')
			fprintf(o, "\\x%02x", (unsigned char)*s++);
		else
			s += fwrite(s, 1, n, o);
	}
}

/* A JSON string: UTF-8 kept, see ctl_out_json_str. */
static void put_json_str(FILE *o, const char *s)
{
	size_t cap = strlen(s) * 6 + 3;
	struct ctl_out out = { malloc(cap), cap, 0, false };
	if (!out.buf) {
		fputs("\"\"", o);
		return;
	}
	ctl_out_json_str(&out, s);
	fputs(out.buf, o);
	free(out.buf);
}

static const char *ok_text(bool ok)
{
	return ok ? "ok" : "BAD or not reached";
}

static void print_text(const char *path, const struct mfd_snapshot_info *in, int rc,
		       const struct mfd_error *err, bool verify)
{
	printf("snapshot     ");
	put_text(stdout, path);
	printf("\nstatus       %s", rc ? "INVALID: " : "valid");
	if (rc)
		{
		char msg[MFD_ERROR_MSG_MAX + 32];
		cli_file_errmsg(err, rc, msg, sizeof(msg));
		put_text(stdout, msg);
	}
	printf("\n");
	if (!in->header_ok)
		return;
	printf("format       version %" PRIu32 ", features 0x%" PRIx64 "%s\n", in->version,
	       in->features, in->has_digest ? " (digest)" : "");
	printf("id           %s\n", in->uuid);
	time_t t = (time_t)in->created_unix_s;
	struct tm tm;
	char when[64] = "?";
	if (gmtime_r(&t, &tm))
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
	printf("created      %s\n", when);
	if (in->live)
		printf("saved        live, %" PRIu32 " passes over memory\n", in->rounds);
	else
		printf("saved        stopped, one pass\n");
	printf("memory       %.1f MiB", (double)in->mem_bytes / (1 << 20));
	if (in->blocks_ok)
		printf(" in %" PRIu32 " block%s, %" PRIu64 " pages present", in->nblocks,
		       in->nblocks == 1 ? "" : "s", in->pages_present);
	printf("\nfile         %" PRIu64 " bytes\n", in->file_bytes);
	if (in->has_digest)
		printf("digest       %016" PRIx64 "\n", in->digest);
	printf("checksums    header %s, trailer %s, block table %s, bitmaps %s, metadata %s, "
	       "devices %s\n", ok_text(in->header_ok), ok_text(in->trailer_ok),
	       ok_text(in->blocks_ok), ok_text(in->bitmaps_ok), ok_text(in->metadata_ok),
	       ok_text(in->devices_ok));
	printf("pages        %s\n", in->page_checksums ? "a checksum per page" : "no checksums");
	if (verify && in->metadata_ok) {
		printf("verified     %" PRIu64 " pages read and checked: %s", in->pages_checked,
		       in->pages_bad ? "" : in->page_checksums ? "all good" : "no checksums to check");
		if (in->pages_bad)
			printf("%" PRIu64 " BAD", in->pages_bad);
		if (in->has_digest)
			printf("; digest %s", in->digest_ok ? "equal" : "DIFFERS");
		printf("\n");
	}
	if (in->nblocks) {
		printf("\nblocks       %-20s %14s %6s %12s %7s %14s  %s\n", "name", "bytes", "page",
		       "present", "%", "pages at", "bitmap");
		for (uint32_t i = 0; i < in->nblocks; i++) {
			const struct mfd_snapshot_block *b = &in->blocks[i];
			uint64_t pages = b->page_size ? b->length / b->page_size : 0;
			printf("             ");
			put_text(stdout, b->name);
			int pad = 20 - (int)strlen(b->name);
			printf("%*s %14" PRIu64 " %6" PRIu32 " %12" PRIu64 " %6.1f%% %14" PRIu64 "  %s\n",
			       pad > 0 ? pad : 0, "", b->length, b->page_size, b->pages_present,
			       pages ? 100.0 * (double)b->pages_present / (double)pages : 0.0,
			       b->pages_offset, b->status ? cli_file_strerror(b->status) : "ok");
		}
	}
	if (in->ndevices) {
		printf("\ndevices      %-24s %8s %12s %14s  %s\n", "name.instance", "version", "bytes",
		       "at", "state");
		for (uint32_t i = 0; i < in->ndevices; i++) {
			const struct mfd_snapshot_device *d = &in->devices[i];
			char inst[16];
			snprintf(inst, sizeof(inst), ".%" PRIu32, d->instance);
			printf("             ");
			put_text(stdout, d->name);
			int pad = 24 - (int)strlen(d->name) - (int)strlen(inst);
			printf("%s%*s %8" PRIu32 " %12" PRIu64 " %14" PRIu64 "  %s\n", inst,
			       pad > 0 ? pad : 0, "", d->version, d->length, d->offset,
			       d->status ? cli_file_strerror(d->status) : "ok");
		}
	}
}

static void json_status(int status)
{
	if (status) {
		printf("{\"code\":%d,\"name\":", status);
		put_json_str(stdout, cli_file_strerror(status));
		printf("}");
	} else {
		printf("\"ok\"");
	}
}

static void print_json(const char *path, const struct mfd_snapshot_info *in, int rc,
		       const struct mfd_error *err, bool verify)
{
	printf("{\"path\":");
	put_json_str(stdout, path);
	printf(",\"valid\":%s,\"error\":", rc ? "false" : "true");
	if (rc) {
		printf("{\"code\":%d,\"name\":", rc);
		char msg[MFD_ERROR_MSG_MAX + 32];
		cli_file_errmsg(err, rc, msg, sizeof(msg));
		put_json_str(stdout, cli_file_strerror(rc));
		printf(",\"message\":");
		put_json_str(stdout, msg);
		printf("}");
	} else {
		printf("null");
	}
	printf(",\"checksums\":{\"header\":%s,\"trailer\":%s,\"block_table\":%s,\"bitmaps\":%s,"
	       "\"metadata\":%s,\"devices\":%s}",
	       in->header_ok ? "true" : "false", in->trailer_ok ? "true" : "false",
	       in->blocks_ok ? "true" : "false", in->bitmaps_ok ? "true" : "false",
	       in->metadata_ok ? "true" : "false", in->devices_ok ? "true" : "false");
	if (in->header_ok) {
		printf(",\"version\":%" PRIu32 ",\"features\":%" PRIu64 ",\"uuid\":\"%s\","
		       "\"created_unix_s\":%" PRIu64 ",\"live\":%s,\"rounds\":%" PRIu32 ","
		       "\"file_bytes\":%" PRIu64 ",\"mem_bytes\":%" PRIu64 ",\"digest\":",
		       in->version, in->features, in->uuid, in->created_unix_s,
		       in->live ? "true" : "false", in->rounds, in->file_bytes, in->mem_bytes);
		if (in->has_digest)
			printf("\"%016" PRIx64 "\"", in->digest);
		else
			printf("null");
	}
	if (in->blocks_ok)
		printf(",\"pages_present\":%" PRIu64, in->pages_present);
	printf(",\"page_checksums\":%s", in->page_checksums ? "true" : "false");
	if (verify && in->metadata_ok)
		printf(",\"verify\":{\"pages_checked\":%" PRIu64 ",\"pages_bad\":%" PRIu64
		       ",\"pages_ok\":%s,\"digest_ok\":%s}", in->pages_checked, in->pages_bad,
		       in->pages_ok ? "true" : "false",
		       in->has_digest ? (in->digest_ok ? "true" : "false") : "null");
	printf(",\"blocks\":[");
	for (uint32_t i = 0; i < in->nblocks; i++) {
		const struct mfd_snapshot_block *b = &in->blocks[i];
		printf("%s{\"name\":", i ? "," : "");
		put_json_str(stdout, b->name);
		printf(",\"length\":%" PRIu64 ",\"page_size\":%" PRIu32 ",\"pages\":%" PRIu64 ","
		       "\"pages_present\":%" PRIu64 ",\"bitmap_offset\":%" PRIu64 ","
		       "\"pages_offset\":%" PRIu64 ",\"bitmap\":",
		       b->length, b->page_size, b->page_size ? b->length / b->page_size : 0,
		       b->pages_present, b->bitmap_offset, b->pages_offset);
		json_status(b->status);
		printf("}");
	}
	printf("],\"device_bytes\":%" PRIu64 ",\"devices\":[", in->device_bytes);
	for (uint32_t i = 0; i < in->ndevices; i++) {
		const struct mfd_snapshot_device *d = &in->devices[i];
		printf("%s{\"name\":", i ? "," : "");
		put_json_str(stdout, d->name);
		printf(",\"instance\":%" PRIu32 ",\"version\":%" PRIu32 ",\"length\":%" PRIu64 ","
		       "\"offset\":%" PRIu64 ",\"state\":", d->instance, d->version, d->length,
		       d->offset);
		json_status(d->status);
		printf("}");
	}
	printf("]}\n");
}

int cmd_inspect(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "verify", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	bool json = false, verify = false;
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "jvh", lopts, NULL)) != -1) {
		switch (opt) {
		case 'j': json = true; break;
		case 'v': verify = true; break;
		case 'h': cmd_inspect_usage(stdout); return 0;
		default: cmd_inspect_usage(stderr); return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "multifd inspect: expected one PATH\n");
		cmd_inspect_usage(stderr);
		return 2;
	}
	const char *path = argv[optind];
	struct mfd_snapshot_info info;
	struct mfd_error err;
	mfd_error_clear(&err);
	int rc = verify ? mfd_snapshot_verify(path, &info, &err) : mfd_snapshot_inspect(path, &info, &err);
	if (json)
		print_json(path, &info, rc, &err, verify);
	else
		print_text(path, &info, rc, &err, verify);
	mfd_snapshot_info_free(&info);
	return rc ? 1 : 0;
}
