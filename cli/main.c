/* cli/main — `multifd <command> [options]`: dispatch through the command table.
 *
 * One rule for exit statuses, every command: 0 ok, 1 failure, 2 usage error (the command line
 * itself is wrong; a message says what).  `vm` adds 77 (KVM asked for and unavailable, for
 * test scripts) and passes on the guest's own shutdown status. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include "cli.h"

static const struct cli_cmd commands[] = {
	{ "bench", cmd_bench, "measure a transfer between two local processes", cmd_bench_usage },
	{ "vm", cmd_vm, "run a tiny VM (KVM or soft)", cmd_vm_usage },
	{ "ctl", cmd_ctl, "control a running VM: migrate, save, query, cancel, stop, cont, quit",
	  cmd_ctl_usage },
	{ "demo", cmd_demo, "live-migrate a running guest between two local processes",
	  cmd_demo_usage },
	{ "inspect", cmd_inspect, "check and describe a snapshot file", cmd_inspect_usage },
};

static void usage(FILE *out)
{
	fprintf(out, "usage: multifd <command> [options]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "  %-10s %s\n", "help", "show help for a command: multifd help <command>");
	fprintf(out, "  %-10s %s\n", "version", "print the version");
}

static const struct cli_cmd *find(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	return NULL;
}

int main(int argc, char **argv)
{
	/* No peer may kill us by closing its end: a control client that leaves before reading its
	 * reply, a migration peer, a closed stdout.  Writes to them fail with EPIPE instead, and
	 * every writer handles that.  (Our sockets also send with MSG_NOSIGNAL, so the guarantee
	 * does not rest on this alone.) */
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *name = argv[1];
	if (!strcmp(name, "-h") || !strcmp(name, "--help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(name, "version") || !strcmp(name, "--version")) {
		printf("multifd %s\n", mfd_version());
		return 0;
	}
	if (!strcmp(name, "help")) {
		if (argc > 3) {
			fprintf(stderr, "multifd help: one command at a time\n");
			return 2;
		}
		if (argc == 2) {
			usage(stdout);
			return 0;
		}
		const struct cli_cmd *c = find(argv[2]);
		if (!c) {
			fprintf(stderr, "multifd help: no command '%s'\n", argv[2]);
			usage(stderr);
			return 2;
		}
		c->usage(stdout);
		return 0;
	}
	const struct cli_cmd *c = find(name);
	if (!c) {
		fprintf(stderr, "multifd: unknown command '%s'\n", name);
		usage(stderr);
		return 2;
	}
	return c->main(argc - 1, argv + 1);
}
