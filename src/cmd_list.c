/* `kvmlite list`: the live API sockets of the default directory (where
 * `kvmlite run --api-sock auto` puts them) and each VM's state. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "api/api.h"
#include "cmd.h"

static const char list_usage[] =
	"usage: kvmlite list\n"
	"\n"
	"Lists the kvmlite API sockets in $KVMLITE_SOCK_DIR (default /run/kvmlite,\n"
	"where `kvmlite run --api-sock auto` creates PID.sock) that answer, with\n"
	"each VM's state. Stale sockets are left out.\n";

int cmd_list(int argc, char **argv)
{
	if (argc > 1) {
		bool help = !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help");
		fputs(list_usage, help ? stdout : stderr);
		return help ? 0 : EXIT_USAGE;
	}
	const char *dir = api_sock_dir();
	DIR *d = opendir(dir);
	if (!d) {
		if (errno == ENOENT)
			return 0; /* nothing ever ran with --api-sock auto */
		fprintf(stderr, "kvmlite list: %s: %s\n", dir, strerror(errno));
		return EXIT_VMM_ERROR;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);
		if (len < 6 || strcmp(e->d_name + len - 5, ".sock"))
			continue;
		char path[4096], resp[4096];
		int status;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (api_client_request(path, "GET", "/", NULL, &status, resp, sizeof(resp)) < 0 || status != 200)
			continue;
		json_object *obj = json_tokener_parse(resp), *state;
		const char *s = obj && json_object_object_get_ex(obj, "state", &state) ? json_object_get_string(state) : "?";
		printf("%s\t%s\n", path, s);
		json_object_put(obj);
	}
	closedir(d);
	return 0;
}
