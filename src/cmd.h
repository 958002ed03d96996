/* Subcommands: each is one file (cmd_<name>.c) with one entry point. */
#ifndef KVMLITE_CMD_H
#define KVMLITE_CMD_H

/* Exit statuses shared by every subcommand. */
#define EXIT_VMM_ERROR   1
#define EXIT_USAGE       2
#define EXIT_GUEST_PANIC 3

int cmd_run(int argc, char **argv);

#endif
