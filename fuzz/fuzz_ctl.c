/* fuzz_ctl — the control protocol's line parser (cli/ctl_json.c): any bytes in, a bounded
 * message or an error out; every parsed value is checked against the parser's promises. */
#include <stdlib.h>
#include <string.h>
#include "../cli/ctl_json.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ctl_msg m;
	char err[128];
	if (ctl_parse((const char *)data, size, &m, err, sizeof(err)) != 0) {
		if (!memchr(err, '\0', sizeof(err)))
			abort();
		return 0;
	}
	if (m.n > CTL_MAX_KEYS)
		abort();
	for (unsigned i = 0; i < m.n; i++) {
		if (strlen(m.v[i].key) > CTL_MAX_KEY || strlen(m.v[i].str) > CTL_MAX_STR)
			abort();
		if (m.v[i].type == CTL_BOOL && m.v[i].num != 0 && m.v[i].num != 1)
			abort();
		for (unsigned k = 0; k < i; k++)
			if (!strcmp(m.v[i].key, m.v[k].key))
				abort();
	}
	return 0;
}
