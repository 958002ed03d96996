/* `kvmlite status`: GET / and print the state. */
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "cmd.h"

static const char status_usage[] =
	"usage: kvmlite status --api-sock PATH | --pid PID\n"
	"\n"
	"Prints the state of the VM served on PATH (or $KVMLITE_SOCK_DIR/PID.sock):\n"
	"Not started, Running or Paused. Exit status 0, or 1 if it cannot be asked.\n";

int cmd_status(int argc, char **argv)
{
	char sock[4096], resp[4096];
	int rc = cli_api_sock(argc, argv, status_usage, sock, sizeof(sock));
	if (rc)
		return rc > 0 ? 0 : EXIT_USAGE;
	rc = cli_api_call(argv[0], sock, "GET", "/", NULL, 200, resp, sizeof(resp));
	if (rc)
		return rc;
	json_object *obj = json_tokener_parse(resp), *state;
	if (!obj || !json_object_object_get_ex(obj, "state", &state) || !json_object_is_type(state, json_type_string)) {
		fprintf(stderr, "kvmlite status: %s: unexpected answer: %s\n", sock, resp);
		json_object_put(obj);
		return EXIT_VMM_ERROR;
	}
	printf("%s\n", json_object_get_string(state));
	json_object_put(obj);
	return 0;
}
