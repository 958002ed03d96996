/* `kvmlite resume`: PATCH /vm {"state": "Resumed"} on a paused kvmlite. */
#include "cmd.h"

static const char resume_usage[] =
	"usage: kvmlite resume --api-sock PATH | --pid PID\n"
	"\n"
	"Resumes the VM served on PATH (or $KVMLITE_SOCK_DIR/PID.sock).\n"
	"Exit status 0, or 1 with the reason.\n";

int cmd_resume(int argc, char **argv)
{
	return cli_api_simple(argc, argv, resume_usage, "PATCH", "/vm", "{\"state\": \"Resumed\"}");
}
