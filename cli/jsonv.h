/* cli/jsonv — read values out of a JSON text by path, for the command's own uses of replies
 * (a query's statistics, an event line).  No allocation, no tree: each look-up walks the text.
 *
 * A path names object members and array elements, separated by dots: "migration.rounds",
 * "migration.per_channel.2.bytes".  The text is checked only as far as the walk goes, with a
 * depth bound: malformed input yields "not found", never a read past the NUL. */
#ifndef MFD_CLI_JSONV_H
#define MFD_CLI_JSONV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "multifd.h"

/* The value at path (its first byte, and in *len its length), or NULL. */
const char *jv_find(const char *js, const char *path, size_t *len);
/* A number at path (0 when absent or not a number). */
uint64_t jv_u64(const char *js, const char *path);
double jv_num(const char *js, const char *path);
/* true only for the literal true. */
bool jv_bool(const char *js, const char *path);
/* A string at path into out (escapes other than \" and \\ kept as they are); false when absent
 * or not a string. */
bool jv_str(const char *js, const char *path, char *out, size_t cap);

/* A statistics object (mfd_stats_json's, docs/json.md) back into the struct, member by member;
 * "status" by name. */
void jv_stats(const char *js, const char *path, struct mfd_stats *st);

#endif
