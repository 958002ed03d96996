/* `kvmlite pause`: PATCH /vm {"state": "Paused"} on a running kvmlite. */
#include "cmd.h"

static const char pause_usage[] =
	"usage: kvmlite pause --api-sock PATH | --pid PID\n"
	"\n"
	"Pauses the VM served on PATH (or $KVMLITE_SOCK_DIR/PID.sock): returns\n"
	"once no vCPU runs guest code. Exit status 0, or 1 with the reason.\n";

int cmd_pause(int argc, char **argv)
{
	return cli_api_simple(argc, argv, pause_usage, "PATCH", "/vm", "{\"state\": \"Paused\"}");
}
