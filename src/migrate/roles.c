/* migrate/roles — the role table: which state machine a session of each role runs.  session.c
 * reaches a role only through this table; a new role is a new entry. */
#include "migrate/session.h"

static const struct mfd__role_ops *const roles[] = {
	[MFD_OUTGOING] = &mfd__role_outgoing,
	[MFD_INCOMING] = &mfd__role_incoming,
	[MFD_SAVE] = &mfd__role_save,
	[MFD_RESTORE] = &mfd__role_restore,
};

const struct mfd__role_ops *mfd__role_find(enum mfd_role role)
{
	if ((unsigned)role >= MFD_ARRAY_SIZE(roles))
		return NULL;
	return roles[role];
}
