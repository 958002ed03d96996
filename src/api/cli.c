/* What the API client subcommands share: their option (--api-sock PATH or
 * --pid PID) and one request with its errors printed. A CLI boundary:
 * this file prints. */
#include "api.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"

int cli_api_sock(int argc, char **argv, const char *usage, char *path, size_t len)
{
	static const struct option options[] = {
		{ "api-sock", required_argument, NULL, 's' },
		{ "pid", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	path[0] = '\0';
	opterr = 0;
	optind = 0;
	int c;
	while ((c = getopt_long(argc, argv, ":s:p:h", options, NULL)) != -1) {
		char *end;
		switch (c) {
		case 's':
			if ((size_t)snprintf(path, len, "%s", optarg) >= len) {
				fprintf(stderr, "kvmlite %s: --api-sock %s: too long\n", argv[0], optarg);
				return -EINVAL;
			}
			break;
		case 'p': {
			long pid = strtol(optarg, &end, 10);
			if (*end || end == optarg || pid <= 0) {
				fprintf(stderr, "kvmlite %s: --pid %s: expected a process id\n", argv[0], optarg);
				return -EINVAL;
			}
			snprintf(path, len, "%s/%ld.sock", api_sock_dir(), pid);
			break;
		}
		case 'h':
			fputs(usage, stdout);
			return 1;
		case ':':
			fprintf(stderr, "kvmlite %s: option %s needs a value\n", argv[0], argv[optind - 1]);
			return -EINVAL;
		default:
			fprintf(stderr, "kvmlite %s: unknown option %s\n", argv[0], argv[optind - 1]);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kvmlite %s: unexpected argument '%s'\n", argv[0], argv[optind]);
		return -EINVAL;
	}
	if (!path[0]) {
		fprintf(stderr, "kvmlite %s: --api-sock PATH (or --pid PID) is required\n%s", argv[0], usage);
		return -EINVAL;
	}
	return 0;
}

int cli_api_call(const char *cmd, const char *sock, const char *method, const char *path, const char *body,
		 int want, char *resp, size_t resp_len)
{
	int status;
	char local[4096];
	if (!resp) {
		resp = local;
		resp_len = sizeof(local);
	}
	int rc = api_client_request(sock, method, path, body, &status, resp, resp_len);
	if (rc < 0) {
		fprintf(stderr, "kvmlite %s: %s: %s%s\n", cmd, sock, strerror(-rc),
			rc == -ECONNREFUSED || rc == -ENOENT ? " (is kvmlite running with --api-sock?)" : "");
		return EXIT_VMM_ERROR;
	}
	if (status != want) {
		char fault[1024];
		api_client_fault(resp, fault, sizeof(fault));
		fprintf(stderr, "kvmlite %s: HTTP %d: %s\n", cmd, status, fault[0] ? fault : resp);
		return EXIT_VMM_ERROR;
	}
	return 0;
}

int cli_api_simple(int argc, char **argv, const char *usage, const char *method, const char *path,
		   const char *body)
{
	char sock[4096];
	int rc = cli_api_sock(argc, argv, usage, sock, sizeof(sock));
	if (rc)
		return rc > 0 ? 0 : EXIT_USAGE;
	return cli_api_call(argv[0], sock, method, path, body, 204, NULL, 0);
}
