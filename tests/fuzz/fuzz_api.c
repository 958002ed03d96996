/* libFuzzer target for the API router (src/api/routes.c): the input picks
 * the VM state and the method, then holds "PATH\nBODY". Every request must
 * get a reply with a sane status, an error reply must be JSON with a
 * fault_message, and nothing may leak or overflow (ASan/UBSan). The body
 * is also fed to api_config_load(), the --config-file parser.
 *
 *   tests/fuzz/run-api [SECONDS]   builds with clang and runs it */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "api/api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const methods[] = { "GET", "PUT", "PATCH", "DELETE", "POST", "" };
	if (size < 2)
		return 0;
	enum api_state state = (enum api_state)(data[0] % 4);
	const char *method = methods[data[1] % (sizeof(methods) / sizeof(methods[0]))];
	data += 2;
	size -= 2;
	const uint8_t *nl = memchr(data, '\n', size);
	size_t path_len = nl ? (size_t)(nl - data) : size;
	char *path = strndup((const char *)data, path_len); /* a NUL in the path ends it, as in MHD */
	const char *body = nl ? (const char *)nl + 1 : NULL;
	size_t body_len = nl ? size - path_len - 1 : 0;
	if (!path)
		return 0;

	struct vm_config vm_cfg = { .nr_cpus = 1, .ram_size = 128ULL << 20 };
	struct api_config cfg;
	if (api_config_init(&cfg, &vm_cfg) == 0) {
		struct api_reply reply;
		/* Twice: the second request sees what the first committed. */
		for (int round = 0; round < 2; round++) {
			if (api_handle(&cfg, state, method, path, body, body_len, &reply) == 0) {
				if (reply.status < 200 || reply.status > 599)
					abort();
				if (reply.status >= 400) {
					json_object *o = json_tokener_parse(reply.body), *m;
					if (!o || !json_object_object_get_ex(o, "fault_message", &m))
						abort();
					json_object_put(o);
				}
			}
			api_reply_free(&reply);
		}
		if (cfg.vcpu_count < 1 || cfg.vcpu_count > API_MAX_CPUS || cfg.nr_drives > API_MAX_DRIVES ||
		    cfg.nr_ifaces > API_MAX_IFACES)
			abort();
		api_config_free(&cfg);
	}
	if (api_config_init(&cfg, &vm_cfg) == 0) {
		char err[256];
		api_config_load(&cfg, body, body_len, err, sizeof(err));
		api_config_free(&cfg);
	}
	free(path);
	return 0;
}
