/* cli/timeline — see timeline.h. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "timeline.h"

#define MIB (1024.0 * 1024.0)

int timeline_add(struct timeline *tl, const struct mfd_stats *st)
{
	if (st->status == MFD_STATUS_NONE)
		return 0;
	if (tl->n == tl->cap) {
		size_t cap = tl->cap ? tl->cap * 2 : 256;
		struct tl_sample *v = realloc(tl->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		tl->v = v;
		tl->cap = cap;
	}
	tl->v[tl->n++] = (struct tl_sample){
		.t_ms = st->total_ms, .status = st->status, .rounds = st->rounds,
		.wire_bytes = st->wire_bytes, .dirty_rate_bps = st->dirty_rate_bps,
		.throttle_pct = st->throttle_pct,
		.round_left_bytes = st->round_bytes > st->round_done_bytes
					    ? st->round_bytes - st->round_done_bytes : 0,
	};
	return 0;
}

void timeline_free(struct timeline *tl)
{
	free(tl->v);
	memset(tl, 0, sizeof(*tl));
}

/* ---- drawing ------------------------------------------------------------------------------ */

enum { W = 960, H = 660, L = 78, R = 28 };

struct band {
	const char *title, *unit;
	double y0, h;		/* pixels */
	double max;		/* the axis' top value */
};

/* The smallest "round" number (1, 2, 2.5 or 5 times a power of ten) at least v. */
static double nice_ceil(double v)
{
	if (v <= 0)
		return 1;
	double p = pow(10, floor(log10(v)));
	static const double steps[] = { 1, 2, 2.5, 5, 10 };
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
		if (steps[i] * p >= v * 0.999)
			return steps[i] * p;
	return 10 * p;
}

static double x_of(double t_ms, double tmax)
{
	return L + (W - L - R) * (t_ms / tmax);
}

static double y_of(const struct band *b, double v)
{
	if (v > b->max)
		v = b->max;
	return b->y0 + b->h - b->h * (v < 0 ? 0 : v / b->max);
}

static void axes(FILE *f, const struct band *b, double tmax)
{
	fprintf(f, "<text x=\"%d\" y=\"%.1f\" class=\"band\">%s</text>\n", L, b->y0 - 8, b->title);
	for (int k = 0; k <= 4; k++) {
		double v = b->max * k / 4, y = y_of(b, v);
		fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" class=\"grid\"/>\n", L, y,
			W - R, y);
		fprintf(f, "<text x=\"%d\" y=\"%.1f\" class=\"tick\" text-anchor=\"end\">%g%s</text>\n",
			L - 6, y + 4, v, k == 4 ? b->unit : "");
	}
	fprintf(f, "<rect x=\"%d\" y=\"%.1f\" width=\"%d\" height=\"%.1f\" class=\"frame\"/>\n", L,
		b->y0, W - L - R, b->h);
	(void)tmax;
}

/* A polyline of (t, v) points; step: hold each value until the next sample. */
static void series(FILE *f, const struct band *b, double tmax, const double *t, const double *v,
		   size_t n, bool step, const char *cls)
{
	if (n == 0)
		return;
	fprintf(f, "<polyline class=\"%s\" points=\"", cls);
	for (size_t i = 0; i < n; i++) {
		if (step && i)
			fprintf(f, "%.1f,%.1f ", x_of(t[i], tmax), y_of(b, v[i - 1]));
		fprintf(f, "%.1f,%.1f ", x_of(t[i], tmax), y_of(b, v[i]));
	}
	fprintf(f, "\"/>\n");
}

static void escaped(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '<')
			fputs("&lt;", f);
		else if (*s == '>')
			fputs("&gt;", f);
		else if (*s == '&')
			fputs("&amp;", f);
		else if ((unsigned char)*s >= 0x20)
			fputc(*s, f);
	}
}

int timeline_write_svg(const struct timeline *tl, const struct mfd_stats *fin, const char *title,
		       const char *path, char *err, size_t errlen)
{
	size_t n = tl->n;
	double *t = calloc(n + 1, sizeof(double)), *rate = calloc(n + 1, sizeof(double));
	double *tr = calloc(n + 1, sizeof(double)), *dirty = calloc(n + 1, sizeof(double));
	double *left = calloc(n + 1, sizeof(double)), *thr = calloc(n + 1, sizeof(double));
	FILE *f = NULL;
	int rc = -ENOMEM;
	if (!t || !rate || !tr || !dirty || !left || !thr) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	double tmax = fin->total_ms, rmax = 0, lmax = 0;
	size_t nr = 0;
	for (size_t i = 0; i < n; i++) {
		const struct tl_sample *s = &tl->v[i];
		t[i] = (double)s->t_ms;
		dirty[i] = s->dirty_rate_bps / MIB;
		left[i] = s->round_left_bytes / MIB;
		thr[i] = s->throttle_pct;
		tmax = fmax(tmax, t[i]);
		rmax = fmax(rmax, dirty[i]);
		lmax = fmax(lmax, left[i]);
		/* Throughput between two samples, drawn at the middle of their interval. */
		if (i && s->t_ms > tl->v[i - 1].t_ms) {
			tr[nr] = (t[i] + t[i - 1]) / 2;
			rate[nr] = (double)(s->wire_bytes - tl->v[i - 1].wire_bytes) / MIB /
				   ((t[i] - t[i - 1]) / 1000.0);
			rmax = fmax(rmax, rate[nr]);
			nr++;
		}
	}
	if (tmax < 1)
		tmax = 1;
	struct band rates = { "throughput and dirty rate", " MiB/s", 92, 250, nice_ceil(rmax) };
	struct band rem = { "bytes the current round still has to send", " MiB", 380, 130,
			    nice_ceil(lmax) };
	struct band thrb = { "throttle", "%", 548, 70, 100 };

	f = fopen(path, "w");
	if (!f) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
		"viewBox=\"0 0 %d %d\">\n<style>\n"
		"text { font-family: sans-serif; fill: #222; }\n"
		".title { font-size: 17px; font-weight: bold; } .band { font-size: 13px; }\n"
		".tick { font-size: 11px; fill: #555; } .legend { font-size: 12px; }\n"
		".grid { stroke: #ddd; stroke-width: 1; } .frame { fill: none; stroke: #888; }\n"
		".tput { fill: none; stroke: #1f77b4; stroke-width: 2; }\n"
		".dirty { fill: none; stroke: #ff7f0e; stroke-width: 2; }\n"
		".left { fill: #2ca02c; fill-opacity: 0.35; stroke: #2ca02c; stroke-width: 1.5; }\n"
		".thr { fill: none; stroke: #9467bd; stroke-width: 2; }\n"
		".round { stroke: #777; stroke-width: 1; stroke-dasharray: 4 3; }\n"
		".down { fill: #d62728; fill-opacity: 0.3; }\n"
		"</style>\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W, H, W, H);
	fprintf(f, "<text x=\"%d\" y=\"26\" class=\"title\">", L);
	escaped(f, title);
	fprintf(f, "</text>\n<text x=\"%d\" y=\"48\" class=\"legend\">%s, %.2f s, %" PRIu64
		" rounds, downtime %" PRIu64 " ms; <tspan fill=\"#1f77b4\">throughput</tspan>, "
		"<tspan fill=\"#ff7f0e\">dirty rate</tspan>, <tspan fill=\"#2ca02c\">round "
		"remaining</tspan>, <tspan fill=\"#9467bd\">throttle</tspan>, <tspan fill=\"#d62728\">"
		"downtime</tspan>, dashed: round starts</text>\n", L, mfd_status_name(fin->status),
		fin->total_ms / 1000.0, fin->rounds, fin->downtime_ms);
	axes(f, &rates, tmax);
	axes(f, &rem, tmax);
	axes(f, &thrb, tmax);

	/* The downtime: from the guest's stop to the commit, at the end of the run. */
	if (fin->downtime_ms && fin->status == MFD_STATUS_COMPLETED) {
		double x0 = x_of(fmax(0, (double)fin->total_ms - (double)fin->downtime_ms), tmax);
		double x1 = fmax(x_of(fin->total_ms, tmax), x0 + 2);
		fprintf(f, "<rect class=\"down\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/>\n",
			x0, rates.y0, x1 - x0, thrb.y0 + thrb.h - rates.y0);
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"tick\" text-anchor=\"end\" "
			"fill=\"#d62728\">downtime %" PRIu64 " ms</text>\n", x0 - 3, rates.y0 + 14,
			fin->downtime_ms);
	}
	/* Round starts: where the round number changes (labelled, at most about 30 labels). */
	uint64_t last_round = 0, nrounds = fin->rounds ? fin->rounds : 1;
	uint64_t every = nrounds > 30 ? (nrounds + 29) / 30 : 1;
	for (size_t i = 0; i < n; i++) {
		const struct tl_sample *s = &tl->v[i];
		if (s->rounds == last_round || s->rounds == 0)
			continue;
		double x = x_of(i ? (t[i] + t[i - 1]) / 2 : t[i], tmax);
		fprintf(f, "<line class=\"round\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", x,
			rates.y0, x, thrb.y0 + thrb.h);
		if (s->rounds % every == 0 || s->rounds == 1)
			fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"tick\">r%" PRIu64 "</text>\n",
				x + 2, rates.y0 - 8 + 16 * (double)(s->rounds % 2), s->rounds);
		last_round = s->rounds;
	}
	/* The remaining bytes as an area, then the lines. */
	if (n) {
		fprintf(f, "<polygon class=\"left\" points=\"%.1f,%.1f ", x_of(t[0], tmax),
			y_of(&rem, 0));
		for (size_t i = 0; i < n; i++)
			fprintf(f, "%.1f,%.1f ", x_of(t[i], tmax), y_of(&rem, left[i]));
		fprintf(f, "%.1f,%.1f\"/>\n", x_of(t[n - 1], tmax), y_of(&rem, 0));
	}
	series(f, &rates, tmax, t, dirty, n, true, "dirty");
	series(f, &rates, tmax, tr, rate, nr, false, "tput");
	series(f, &thrb, tmax, t, thr, n, true, "thr");
	/* The time axis. */
	double step = nice_ceil(tmax / 1000.0 / 8);
	for (double s = 0; s * 1000 <= tmax * 1.0001; s += step)
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"tick\" text-anchor=\"middle\">%g</text>\n",
			x_of(s * 1000, tmax), thrb.y0 + thrb.h + 16, s);
	fprintf(f, "<text x=\"%d\" y=\"%.1f\" class=\"band\" text-anchor=\"middle\">time (s), %zu "
		"samples</text>\n</svg>\n", (W + L - R) / 2, thrb.y0 + thrb.h + 38, n);
	rc = 0;
out:
	if (f && (ferror(f) | fclose(f)) && rc == 0) {
		rc = -EIO;
		snprintf(err, errlen, "%s: write error", path);
	}
	free(t);
	free(rate);
	free(tr);
	free(dirty);
	free(left);
	free(thr);
	return rc;
}

/* ---- sampling a session in a thread ------------------------------------------------------- */

static void *sampler_main(void *arg)
{
	struct tl_sampler *sp = arg;
	struct timespec ts = { 0, (long)sp->period_ms * 1000000L };
	while (!__atomic_load_n(&sp->stop, __ATOMIC_ACQUIRE)) {
		struct mfd_stats st;
		mfd_session_get_stats(sp->s, &st);	/* any thread may */
		timeline_add(sp->tl, &st);
		nanosleep(&ts, NULL);
	}
	return NULL;
}

int timeline_sampler_start(struct tl_sampler *sp, struct timeline *tl, struct mfd_session *s,
			   unsigned period_ms)
{
	*sp = (struct tl_sampler){ .tl = tl, .s = s, .period_ms = period_ms };
	int rc = pthread_create(&sp->t, NULL, sampler_main, sp);
	sp->running = rc == 0;
	return -rc;
}

void timeline_sampler_stop(struct tl_sampler *sp)
{
	if (!sp->running)
		return;
	__atomic_store_n(&sp->stop, 1, __ATOMIC_RELEASE);
	pthread_join(sp->t, NULL);
	sp->running = false;
}
