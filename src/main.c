/* kvmlite: a small virtual machine monitor on Linux KVM. */
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "util.h"
#include "version.h"


struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
	{ "run", cmd_run, "boot a guest (the embedded test guest, or --kernel)" },
	{ "pause", cmd_pause, "pause a VM through its API socket" },
	{ "resume", cmd_resume, "resume a paused VM through its API socket" },
	{ "stop", cmd_stop, "stop a VM through its API socket; kvmlite exits" },
	{ "status", cmd_status, "print a VM's state (Not started, Running, Paused)" },
	{ "list", cmd_list, "list the VMs with an API socket in /run/kvmlite" },
};

static void usage(FILE *out)
{
	fprintf(out, "usage: kvmlite COMMAND [OPTIONS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "\n`kvmlite COMMAND --help` describes a command's options.\n");
}

int main(int argc, char **argv)
{
	process_start_ns = monotonic_ns();
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	const char *name = argv[1];
	if (!strcmp(name, "-h") || !strcmp(name, "--help") || !strcmp(name, "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(name, "--version") || !strcmp(name, "version")) {
		printf("kvmlite %s\n", KVMLITE_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(name, commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "kvmlite: unknown command '%s'\n", name);
	usage(stderr);
	return EXIT_USAGE;
}
