/* Subcommands: each is one file (cmd_<name>.c) with one entry point. */
#ifndef KVMLITE_CMD_H
#define KVMLITE_CMD_H

#include <stddef.h>

#include "version.h"


/* Exit statuses shared by every subcommand. */
#define EXIT_VMM_ERROR   1
#define EXIT_USAGE       2
#define EXIT_GUEST_PANIC 3

int cmd_run(int argc, char **argv);
/* API clients (docs/API.md): talk to a `kvmlite run --api-sock` */
int cmd_pause(int argc, char **argv);
int cmd_resume(int argc, char **argv);
int cmd_stop(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_list(int argc, char **argv);

/* src/api/cli.c, shared by the API clients (they print their errors).
 * cli_api_sock: the socket from --api-sock PATH or --pid PID; 0, 1 after
 * printing usage for --help, or -EINVAL after printing the problem. */
int cli_api_sock(int argc, char **argv, const char *usage, char *path, size_t len);
/* One request; 0 if the answer had status want, else EXIT_VMM_ERROR. */
int cli_api_call(const char *cmd, const char *sock, const char *method, const char *path, const char *body,
		 int want, char *resp, size_t resp_len);
/* cli_api_sock + cli_api_call expecting 204; returns the exit status. */
int cli_api_simple(int argc, char **argv, const char *usage, const char *method, const char *path,
		   const char *body);

#endif
