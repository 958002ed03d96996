/* `kvmlite stop`: kvmlite's own "Stop" action, then waits for the VMM to
 * go away (its socket stops answering). */
#include <errno.h>
#include <stdio.h>
#include <time.h>

#include "api/api.h"
#include "cmd.h"

#define STOP_WAIT_S 30

static const char stop_usage[] =
	"usage: kvmlite stop --api-sock PATH | --pid PID\n"
	"\n"
	"Stops the VM served on PATH (or $KVMLITE_SOCK_DIR/PID.sock) as a power\n"
	"cut would: the guest gets no notice (kvmlite has no ACPI power button\n"
	"yet), the VMM writes its final metrics and exits with status 0. Works\n"
	"before InstanceStart too. Waits up to 30 s for the VMM to exit.\n"
	"Exit status 0, or 1 with the reason.\n";

int cmd_stop(int argc, char **argv)
{
	char sock[4096];
	int rc = cli_api_sock(argc, argv, stop_usage, sock, sizeof(sock));
	if (rc)
		return rc > 0 ? 0 : EXIT_USAGE;
	rc = cli_api_call(argv[0], sock, "PUT", "/actions", "{\"action_type\": \"Stop\"}", 204, NULL, 0);
	if (rc)
		return rc;
	/* The VMM removes its socket as it exits. */
	for (int i = 0; i < STOP_WAIT_S * 20; i++) {
		int status;
		if (api_client_request(sock, "GET", "/", NULL, &status, NULL, 0) < 0)
			return 0;
		nanosleep(&(struct timespec){ .tv_nsec = 50 * 1000 * 1000 }, NULL);
	}
	fprintf(stderr, "kvmlite stop: %s still answers after %d s\n", sock, STOP_WAIT_S);
	return EXIT_VMM_ERROR;
}
