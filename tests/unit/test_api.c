/* The API router (src/api/routes.c): requests in, (status, JSON, action)
 * out, and the configuration it builds. Replies are parsed back with
 * json-c and checked field by field. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <json-c/json.h>

#include "api/api.h"

struct fixture {
	struct api_config cfg;
	struct api_reply reply;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct vm_config vm_cfg = { .nr_cpus = 1, .ram_size = 256ULL << 20, .cmdline = "test=counter" };
	assert_non_null(f);
	assert_int_equal(api_config_init(&f->cfg, &vm_cfg), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	api_reply_free(&f->reply);
	api_config_free(&f->cfg);
	free(f);
	return 0;
}

/* One request; returns the status. The previous reply is freed. */
static int req(struct fixture *f, enum api_state st, const char *method, const char *path, const char *body)
{
	api_reply_free(&f->reply);
	assert_int_equal(api_handle(&f->cfg, st, method, path, body, body ? strlen(body) : 0, &f->reply), 0);
	return f->reply.status;
}

/* A string field of the reply's JSON (static copy), NULL if absent. */
static const char *field(struct fixture *f, const char *key)
{
	static char out[1024];
	assert_non_null(f->reply.body);
	json_object *o = json_tokener_parse(f->reply.body), *v;
	assert_non_null(o);
	const char *r = NULL;
	if (json_object_object_get_ex(o, key, &v) && v) {
		snprintf(out, sizeof(out), "%s", json_object_get_string(v));
		r = out;
	}
	json_object_put(o);
	return r;
}

static void assert_fault(struct fixture *f, int status, const char *substring)
{
	assert_int_equal(f->reply.status, status);
	assert_int_equal(f->reply.action, API_ACT_NONE);
	const char *msg = field(f, "fault_message");
	assert_non_null(msg);
	if (!strstr(msg, substring))
		fail_msg("fault_message '%s' lacks '%s'", msg, substring);
}

static void test_root(void **state)
{
	struct fixture *f = *state;
	static const struct {
		enum api_state st;
		const char *name;
	} cases[] = { { API_NOT_STARTED, "Not started" }, { API_RUNNING, "Running" }, { API_PAUSED, "Paused" } };
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(req(f, cases[i].st, "GET", "/", NULL), 200);
		assert_string_equal(field(f, "state"), cases[i].name);
		assert_string_equal(field(f, "app_name"), "kvmlite");
		assert_string_equal(field(f, "vmm_version"), KVMLITE_VERSION);
		assert_string_equal(field(f, "id"), "anonymous-instance");
		assert_int_equal(f->reply.action, API_ACT_NONE);
	}
}

static void test_initial_config_from_cli(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(f->cfg.vcpu_count, 1);
	assert_int_equal(f->cfg.mem_size_mib, 256);
	assert_string_equal(f->cfg.boot_args, "test=counter");
	assert_null(f->cfg.kernel_path);
	struct vm_config vm_cfg = { 0 };
	f->cfg.vcpu_count = 3;
	api_config_apply(&f->cfg, &vm_cfg);
	assert_int_equal(vm_cfg.nr_cpus, 3);
	assert_int_equal(vm_cfg.ram_size, 256ULL << 20);
	assert_string_equal(vm_cfg.cmdline, "test=counter");
}

static void test_machine_config(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(req(f, API_NOT_STARTED, "PUT", "/machine-config",
			     "{\"vcpu_count\": 4, \"mem_size_mib\": 512, \"smt\": false, \"track_dirty_pages\": false}"),
			 204);
	assert_null(f->reply.body);
	assert_int_equal(f->cfg.vcpu_count, 4);
	assert_int_equal(f->cfg.mem_size_mib, 512);
	assert_int_equal(req(f, API_NOT_STARTED, "GET", "/machine-config", NULL), 200);
	assert_string_equal(field(f, "vcpu_count"), "4");
	assert_string_equal(field(f, "mem_size_mib"), "512");
	/* PATCH changes only what it names. */
	assert_int_equal(req(f, API_NOT_STARTED, "PATCH", "/machine-config", "{\"vcpu_count\": 2}"), 204);
	assert_int_equal(f->cfg.vcpu_count, 2);
	assert_int_equal(f->cfg.mem_size_mib, 512);
	req(f, API_NOT_STARTED, "PATCH", "/machine-config", "{}");
	assert_fault(f, 400, "Empty PATCH");
}

static void test_machine_config_rejects(void **state)
{
	struct fixture *f = *state;
	static const struct {
		const char *body;
		const char *fault;
	} cases[] = {
		{ "{\"vcpu_count\": 2, \"mem_size_mib\": 64, \"foo\": 1}", "unknown field `foo`" },
		{ "{\"vcpu_count\": \"2\", \"mem_size_mib\": 64}", "`vcpu_count` must be an integer" },
		{ "{\"vcpu_count\": 2.0, \"mem_size_mib\": 64}", "`vcpu_count` must be an integer" },
		{ "{\"vcpu_count\": true, \"mem_size_mib\": 64}", "`vcpu_count` must be an integer" },
		{ "{\"vcpu_count\": 0, \"mem_size_mib\": 64}", "vcpu_count" },
		{ "{\"vcpu_count\": 256, \"mem_size_mib\": 64}", "vcpu_count" },
		{ "{\"vcpu_count\": -1, \"mem_size_mib\": 64}", "vcpu_count" },
		{ "{\"vcpu_count\": 1, \"mem_size_mib\": 1}", "mem_size_mib" },
		{ "{\"vcpu_count\": 1, \"mem_size_mib\": 18446744073709551615}", "mem_size_mib" },
		{ "{\"vcpu_count\": 1, \"mem_size_mib\": 99999999999999999999999}", "mem_size_mib" },
		{ "{\"mem_size_mib\": 64}", "missing field `vcpu_count`" },
		{ "{\"vcpu_count\": null, \"mem_size_mib\": 64}", "missing field `vcpu_count`" },
		{ "{\"vcpu_count\": 2, \"mem_size_mib\": 64, \"smt\": true}", "smt" },
		{ "{\"vcpu_count\": 2, \"mem_size_mib\": 64, \"track_dirty_pages\": true}", "track_dirty_pages" },
		{ "{\"vcpu_count\": 2, \"mem_size_mib\": 64, \"cpu_template\": \"T2\"}", "cpu_template" },
		{ "{\"vcpu_count\": 2, \"mem_size_mib\": 64, \"cpu_template\": \"Z9\"}", "unknown variant `Z9`" },
		{ "[]", "JSON object" },
		{ "42", "" },
		{ "{\"vcpu_count\": 2,", "Malformed JSON" },
		{ "{'vcpu_count': 2}", "Malformed JSON" },
		{ "{\"vcpu_count\": 2, \"mem_size_mib\": 64,}", "Malformed JSON" },
		{ "{\"vcpu_count\": 2, \"mem_size_mib\": 64}{}", "Malformed JSON" },
		{ "{\"vcpu_count\": 2, \"mem_size_mib\": 64} x", "Malformed JSON" },
		{ "{\"a\": \"\xff\xfe\"}", "Malformed JSON" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		req(f, API_NOT_STARTED, "PUT", "/machine-config", cases[i].body);
		assert_fault(f, 400, cases[i].fault);
		/* Nothing was committed. */
		assert_int_equal(f->cfg.vcpu_count, 1);
		assert_int_equal(f->cfg.mem_size_mib, 256);
	}
	/* Whitespace around the object is fine. */
	assert_int_equal(req(f, API_NOT_STARTED, "PUT", "/machine-config", " {\"vcpu_count\":2,\"mem_size_mib\":64}\r\n"),
			 204);
}

static void test_body_edge_cases(void **state)
{
	struct fixture *f = *state;
	/* Empty, embedded NUL, too deep, too big. */
	req(f, API_NOT_STARTED, "PUT", "/machine-config", NULL);
	assert_fault(f, 400, "empty");
	static const char nul_body[] = "{\"vcpu_count\": 2}\0{";
	api_reply_free(&f->reply);
	api_handle(&f->cfg, API_NOT_STARTED, "PUT", "/machine-config", nul_body, sizeof(nul_body) - 1, &f->reply);
	assert_fault(f, 400, "Malformed JSON");
	static const char nul_str[] = "{\"kernel_image_path\": \"a\\u0000b\"}";
	req(f, API_NOT_STARTED, "PUT", "/boot-source", nul_str);
	assert_fault(f, 400, "NUL");
	char deep[200];
	memset(deep, '[', 100);
	memset(deep + 100, ']', 99);
	deep[199] = '\0';
	req(f, API_NOT_STARTED, "PUT", "/machine-config", deep);
	assert_fault(f, 400, "Malformed JSON");
	size_t big_len = API_MAX_BODY + 1;
	char *big = malloc(big_len);
	assert_non_null(big);
	memset(big, ' ', big_len);
	api_reply_free(&f->reply);
	api_handle(&f->cfg, API_NOT_STARTED, "PUT", "/machine-config", big, big_len, &f->reply);
	assert_fault(f, 413, "larger than the limit");
	free(big);
}

static void test_routes_and_methods(void **state)
{
	struct fixture *f = *state;
	static const char *const bad[][2] = {
		{ "GET", "/nope" }, { "DELETE", "/" }, { "POST", "/actions" }, { "GET", "/actions" },
		{ "PUT", "/vm" }, { "GET", "/drives/x" }, { "PUT", "/drives" }, { "PUT", "/machine-config/" },
		{ "", "/" }, { "GET", "" }, { "get", "/" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		req(f, API_NOT_STARTED, bad[i][0], bad[i][1], "{}");
		assert_fault(f, 400, "Invalid request method and/or path");
	}
	api_reply_free(&f->reply);
	api_handle(&f->cfg, API_NOT_STARTED, NULL, NULL, NULL, 0, &f->reply);
	assert_fault(f, 400, "Invalid request");
}

static void test_boot_source(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(req(f, API_NOT_STARTED, "PUT", "/boot-source",
			     "{\"kernel_image_path\": \"/k/vmlinux\", \"initrd_path\": \"/k/initrd\", "
			     "\"boot_args\": \"console=ttyS0\"}"),
			 204);
	assert_string_equal(f->cfg.kernel_path, "/k/vmlinux");
	assert_string_equal(f->cfg.initrd_path, "/k/initrd");
	assert_string_equal(f->cfg.boot_args, "console=ttyS0");
	/* PUT replaces: what is left out goes back to the default. */
	assert_int_equal(req(f, API_NOT_STARTED, "PUT", "/boot-source", "{\"kernel_image_path\": \"/k/bz\"}"), 204);
	assert_string_equal(f->cfg.kernel_path, "/k/bz");
	assert_null(f->cfg.initrd_path);
	assert_null(f->cfg.boot_args);
	req(f, API_NOT_STARTED, "PUT", "/boot-source", "{\"initrd_path\": \"/k/initrd\"}");
	assert_fault(f, 400, "missing field `kernel_image_path`");
	req(f, API_NOT_STARTED, "PUT", "/boot-source", "{\"kernel_image_path\": \"\"}");
	assert_fault(f, 400, "empty");
	assert_string_equal(f->cfg.kernel_path, "/k/bz");
}

static void test_pre_boot_only_after_start(void **state)
{
	struct fixture *f = *state;
	static const char *const puts_[][2] = {
		{ "/machine-config", "{\"vcpu_count\": 1, \"mem_size_mib\": 64}" },
		{ "/boot-source", "{\"kernel_image_path\": \"/k\"}" },
		{ "/drives/root", "{\"drive_id\": \"root\", \"path_on_host\": \"/d\", \"is_root_device\": true}" },
		{ "/network-interfaces/eth0", "{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\"}" },
		{ "/vsock", "{\"guest_cid\": 3, \"uds_path\": \"/v\"}" },
		{ "/logger", "{\"log_path\": \"/l\"}" },
		{ "/metrics", "{\"metrics_path\": \"/m\"}" },
	};
	for (enum api_state st = API_RUNNING; st <= API_PAUSED; st++) {
		for (size_t i = 0; i < sizeof(puts_) / sizeof(puts_[0]); i++) {
			req(f, st, "PUT", puts_[i][0], puts_[i][1]);
			assert_fault(f, 400, "not supported after starting the microVM");
		}
		req(f, st, "PATCH", "/machine-config", "{\"vcpu_count\": 2}");
		assert_fault(f, 400, "after starting");
		req(f, st, "PUT", "/actions", "{\"action_type\": \"InstanceStart\"}");
		assert_fault(f, 400, "after starting");
	}
	assert_int_equal(f->cfg.nr_drives, 0);
	assert_null(f->cfg.kernel_path);
}

static void test_actions(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(req(f, API_NOT_STARTED, "PUT", "/actions", "{\"action_type\": \"InstanceStart\"}"), 204);
	assert_int_equal(f->reply.action, API_ACT_START);
	assert_int_equal(req(f, API_RUNNING, "PUT", "/actions", "{\"action_type\": \"Stop\"}"), 204);
	assert_int_equal(f->reply.action, API_ACT_STOP);
	assert_int_equal(req(f, API_NOT_STARTED, "PUT", "/actions", "{\"action_type\": \"Stop\"}"), 204);
	assert_int_equal(f->reply.action, API_ACT_STOP);
	req(f, API_RUNNING, "PUT", "/actions", "{\"action_type\": \"FlushMetrics\"}");
	assert_fault(f, 400, "metrics");
	req(f, API_NOT_STARTED, "PUT", "/actions", "{\"action_type\": \"SendCtrlAltDel\"}");
	assert_fault(f, 400, "before starting");
	req(f, API_RUNNING, "PUT", "/actions", "{\"action_type\": \"SendCtrlAltDel\"}");
	assert_fault(f, 400, "not supported");
	req(f, API_RUNNING, "PUT", "/actions", "{\"action_type\": \"instancestart\"}");
	assert_fault(f, 400, "unknown variant");
	req(f, API_RUNNING, "PUT", "/actions", "{\"action_type\": 1}");
	assert_fault(f, 400, "must be a string");
	req(f, API_RUNNING, "PUT", "/actions", "{}");
	assert_fault(f, 400, "missing field `action_type`");
}

static void test_patch_vm(void **state)
{
	struct fixture *f = *state;
	static const struct {
		enum api_state st;
		const char *want;
		int status;
		enum api_action action;
		const char *fault;
	} cases[] = {
		{ API_RUNNING, "Paused", 204, API_ACT_PAUSE, NULL },
		{ API_PAUSED, "Resumed", 204, API_ACT_RESUME, NULL },
		{ API_PAUSED, "Paused", 204, API_ACT_NONE, NULL },   /* already there */
		{ API_RUNNING, "Resumed", 204, API_ACT_NONE, NULL },
		{ API_NOT_STARTED, "Paused", 400, API_ACT_NONE, "before starting" },
		{ API_NOT_STARTED, "Resumed", 400, API_ACT_NONE, "before starting" },
		{ API_STOPPED, "Paused", 400, API_ACT_NONE, "stopped" },
		{ API_RUNNING, "Frozen", 400, API_ACT_NONE, "unknown variant `Frozen`" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char body[64];
		snprintf(body, sizeof(body), "{\"state\": \"%s\"}", cases[i].want);
		assert_int_equal(req(f, cases[i].st, "PATCH", "/vm", body), cases[i].status);
		assert_int_equal(f->reply.action, cases[i].action);
		if (cases[i].fault)
			assert_fault(f, 400, cases[i].fault);
	}
}

static void test_devices_stored_and_applied(void **state)
{
	struct fixture *f = *state;
	assert_null(api_config_unsupported(&f->cfg));
	assert_int_equal(req(f, API_NOT_STARTED, "PUT", "/drives/rootfs",
			     "{\"drive_id\": \"rootfs\", \"path_on_host\": \"/img\", \"is_root_device\": true, "
			     "\"is_read_only\": true, \"cache_type\": \"Writeback\", \"rate_limiter\": {}}"),
			 204);
	assert_int_equal(f->cfg.nr_drives, 1);
	assert_true(f->cfg.drives[0].is_read_only);
	assert_string_equal(f->cfg.drives[0].cache_type, "Writeback");
	/* Same id: replaced, not added. */
	assert_int_equal(req(f, API_NOT_STARTED, "PUT", "/drives/rootfs",
			     "{\"drive_id\": \"rootfs\", \"path_on_host\": \"/img2\", \"is_root_device\": true}"),
			 204);
	assert_int_equal(f->cfg.nr_drives, 1);
	assert_string_equal(f->cfg.drives[0].path_on_host, "/img2");
	req(f, API_NOT_STARTED, "PUT", "/drives/data",
	    "{\"drive_id\": \"data\", \"path_on_host\": \"/d\", \"is_root_device\": true}");
	assert_fault(f, 400, "root block device already exists");
	req(f, API_NOT_STARTED, "PUT", "/drives/data",
	    "{\"drive_id\": \"other\", \"path_on_host\": \"/d\", \"is_root_device\": false}");
	assert_fault(f, 400, "does not match");
	req(f, API_NOT_STARTED, "PUT", "/drives/bad-id!",
	    "{\"drive_id\": \"bad-id!\", \"path_on_host\": \"/d\", \"is_root_device\": false}");
	assert_fault(f, 400, "Invalid drive id");
	assert_int_equal(req(f, API_NOT_STARTED, "PUT", "/drives/data",
			     "{\"drive_id\": \"data\", \"path_on_host\": \"/d\", \"is_root_device\": false}"),
			 204);
	/* The root drive becomes /dev/vda whatever the order of the PUTs. */
	struct vm_config vm_cfg = { 0 };
	api_config_apply(&f->cfg, &vm_cfg);
	assert_int_equal(vm_cfg.nr_disks, 2);
	assert_string_equal(vm_cfg.disks[0].path, "/img2");
	assert_string_equal(vm_cfg.disks[0].id, "rootfs");
	assert_false(vm_cfg.disks[0].read_only);
	assert_string_equal(vm_cfg.disks[1].path, "/d");
	assert_string_equal(vm_cfg.append, "root=/dev/vda rw");
	assert_null(api_config_unsupported(&f->cfg));
	assert_int_equal(req(f, API_NOT_STARTED, "PUT", "/drives/pu",
			     "{\"drive_id\": \"pu\", \"path_on_host\": \"/p\", \"is_root_device\": false, "
			     "\"partuuid\": \"0eaa91a0-01\"}"),
			 204);
	assert_non_null(api_config_unsupported(&f->cfg));

	assert_int_equal(req(f, API_NOT_STARTED, "PUT", "/network-interfaces/eth0",
			     "{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\", \"guest_mac\": \"06:00:AC:10:00:02\"}"),
			 204);
	assert_int_equal(f->cfg.nr_ifaces, 1);
	req(f, API_NOT_STARTED, "PUT", "/network-interfaces/eth1",
	    "{\"iface_id\": \"eth1\", \"host_dev_name\": \"tap0\"}");
	assert_fault(f, 400, "already used");
	req(f, API_NOT_STARTED, "PUT", "/network-interfaces/eth1",
	    "{\"iface_id\": \"eth1\", \"host_dev_name\": \"tap1\", \"guest_mac\": \"06:00:AC:10:00\"}");
	assert_fault(f, 400, "guest_mac");
	req(f, API_NOT_STARTED, "PUT", "/network-interfaces/eth1",
	    "{\"iface_id\": \"eth1\", \"host_dev_name\": \"a-very-long-tap-name\"}");
	assert_fault(f, 400, "host_dev_name");

	assert_int_equal(req(f, API_NOT_STARTED, "PUT", "/vsock", "{\"guest_cid\": 3, \"uds_path\": \"/v.sock\"}"), 204);
	assert_int_equal(f->cfg.vsock_cid, 3);
	req(f, API_NOT_STARTED, "PUT", "/vsock", "{\"guest_cid\": 4294967296, \"uds_path\": \"/v.sock\"}");
	assert_fault(f, 400, "guest_cid");
	assert_int_equal(f->cfg.vsock_cid, 3);

	api_config_apply(&f->cfg, &vm_cfg);
	assert_int_equal(vm_cfg.nr_nets, 1);
	assert_string_equal(vm_cfg.nets[0].tap, "tap0");
	assert_true(vm_cfg.nets[0].has_mac);
	assert_int_equal(vm_cfg.nets[0].mac[2], 0xAC);
	assert_true(vm_cfg.vsock.enabled);
	assert_int_equal(vm_cfg.vsock.guest_cid, 3);
	assert_string_equal(vm_cfg.vsock.uds_path, "/v.sock");
}

/* Devices given on the command line show in the API's configuration and
 * come back unchanged when it is applied. */
static void test_cli_devices_round_trip(void **state)
{
	(void)state;
	struct vm_config cli = { .nr_cpus = 1, .ram_size = 64 << 20, .nr_disks = 1, .nr_nets = 1 };
	cli.disks[0] = (struct disk_config){ .path = "/a.img", .read_only = true };
	cli.nets[0] = (struct net_config){ .tap = "tap9", .has_mac = true, .mac = { 6, 1, 2, 3, 4, 5 } };
	cli.vsock = (struct vsock_config){ .enabled = true, .guest_cid = 7, .uds_path = "/v" };
	struct api_config cfg;
	assert_int_equal(api_config_init(&cfg, &cli), 0);
	assert_int_equal(cfg.nr_drives, 1);
	assert_string_equal(cfg.drives[0].id, "drive0");
	assert_string_equal(cfg.ifaces[0].guest_mac, "06:01:02:03:04:05");
	struct vm_config out = { 0 };
	api_config_apply(&cfg, &out);
	assert_string_equal(out.disks[0].path, "/a.img");
	assert_true(out.disks[0].read_only);
	assert_null(out.append);
	assert_memory_equal(out.nets[0].mac, cli.nets[0].mac, 6);
	assert_int_equal(out.vsock.guest_cid, 7);
	api_config_free(&cfg);
}

static void test_drive_limit(void **state)
{
	struct fixture *f = *state;
	for (int i = 0; i <= API_MAX_DRIVES; i++) {
		char path[32], body[160];
		snprintf(path, sizeof(path), "/drives/d%d", i);
		snprintf(body, sizeof(body), "{\"drive_id\": \"d%d\", \"path_on_host\": \"/d\", \"is_root_device\": false}",
			 i);
		int st = req(f, API_NOT_STARTED, "PUT", path, body);
		assert_int_equal(st, i < API_MAX_DRIVES ? 204 : 400);
	}
	assert_int_equal(f->cfg.nr_drives, API_MAX_DRIVES);
}

static void test_logger_and_metrics(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(req(f, API_NOT_STARTED, "PUT", "/logger",
			     "{\"log_path\": \"/l.json\", \"level\": \"debug\", \"show_log_origin\": true}"),
			 204);
	assert_int_equal(f->reply.action, API_ACT_LOGGER);
	assert_int_equal(f->cfg.log_level, API_LOG_DEBUG);
	assert_true(f->cfg.log_show_origin);
	req(f, API_NOT_STARTED, "PUT", "/logger", "{\"log_path\": \"/l.json\", \"level\": \"Loud\"}");
	assert_fault(f, 400, "Loud");
	req(f, API_NOT_STARTED, "PUT", "/logger", "{\"log_path\": \"/l.json\", \"module\": \"x\"}");
	assert_fault(f, 400, "unknown field `module`");
	assert_int_equal(req(f, API_NOT_STARTED, "PUT", "/metrics", "{\"metrics_path\": \"/m.json\"}"), 204);
	assert_int_equal(f->reply.action, API_ACT_METRICS);
	req(f, API_NOT_STARTED, "PUT", "/metrics", "{\"metrics_path\": \"/m2.json\"}");
	assert_fault(f, 400, "Reinitialization");
	assert_string_equal(f->cfg.metrics_path, "/m.json");
	assert_int_equal(req(f, API_RUNNING, "PUT", "/actions", "{\"action_type\": \"FlushMetrics\"}"), 204);
	assert_int_equal(f->reply.action, API_ACT_FLUSH_METRICS);
}

/* GET /vm/config, loaded back as a --config-file, gives the same config. */
static void test_vm_config_round_trip(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(req(f, API_NOT_STARTED, "PUT", "/boot-source",
			     "{\"kernel_image_path\": \"/k\", \"boot_args\": \"a=\\\"b\\\" c\"}"),
			 204);
	assert_int_equal(req(f, API_NOT_STARTED, "PUT", "/machine-config", "{\"vcpu_count\": 7, \"mem_size_mib\": 300}"),
			 204);
	assert_int_equal(req(f, API_NOT_STARTED, "PUT", "/drives/r",
			     "{\"drive_id\": \"r\", \"path_on_host\": \"/img\", \"is_root_device\": true}"),
			 204);
	assert_int_equal(req(f, API_NOT_STARTED, "PUT", "/metrics", "{\"metrics_path\": \"/m\"}"), 204);
	assert_int_equal(req(f, API_NOT_STARTED, "GET", "/vm/config", NULL), 200);

	struct api_config copy;
	struct vm_config empty = { .nr_cpus = 1, .ram_size = 64ULL << 20 };
	char err[256];
	assert_int_equal(api_config_init(&copy, &empty), 0);
	int rc = api_config_load(&copy, f->reply.body, strlen(f->reply.body), err, sizeof(err));
	if (rc)
		fail_msg("load: %s (%s)", err, f->reply.body);
	assert_string_equal(copy.kernel_path, "/k");
	assert_string_equal(copy.boot_args, "a=\"b\" c");
	assert_null(copy.initrd_path);
	assert_int_equal(copy.vcpu_count, 7);
	assert_int_equal(copy.mem_size_mib, 300);
	assert_int_equal(copy.nr_drives, 1);
	assert_string_equal(copy.drives[0].path_on_host, "/img");
	assert_string_equal(copy.metrics_path, "/m");
	api_config_free(&copy);
}

static void test_config_file_errors(void **state)
{
	(void)state;
	static const struct {
		const char *json;
		const char *err;
	} cases[] = {
		{ "{\"frob\": {}}", "unknown field `frob`" },
		{ "{\"machine-config\": {\"vcpu_count\": 1}}", "machine-config: missing field `mem_size_mib`" },
		{ "{\"drives\": [{\"drive_id\": \"a\"}]}", "drives: missing field" },
		{ "{\"drives\": [1]}", "drives: " },
		{ "{\"drives\": {}}", "must be an array" },
		{ "{\"balloon\": {\"amount_mib\": 1}}", "balloon: not supported" },
		{ "{\"boot-source\": ", "Malformed JSON" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct api_config cfg;
		struct vm_config vm_cfg = { .nr_cpus = 1, .ram_size = 64ULL << 20 };
		char err[256];
		assert_int_equal(api_config_init(&cfg, &vm_cfg), 0);
		assert_int_equal(api_config_load(&cfg, cases[i].json, strlen(cases[i].json), err, sizeof(err)), -EINVAL);
		if (!strstr(err, cases[i].err))
			fail_msg("'%s': error '%s' lacks '%s'", cases[i].json, err, cases[i].err);
		api_config_free(&cfg);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_root, setup, teardown),
		cmocka_unit_test_setup_teardown(test_initial_config_from_cli, setup, teardown),
		cmocka_unit_test_setup_teardown(test_machine_config, setup, teardown),
		cmocka_unit_test_setup_teardown(test_machine_config_rejects, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body_edge_cases, setup, teardown),
		cmocka_unit_test_setup_teardown(test_routes_and_methods, setup, teardown),
		cmocka_unit_test_setup_teardown(test_boot_source, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pre_boot_only_after_start, setup, teardown),
		cmocka_unit_test_setup_teardown(test_actions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_patch_vm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_devices_stored_and_applied, setup, teardown),
		cmocka_unit_test_setup_teardown(test_drive_limit, setup, teardown),
		cmocka_unit_test(test_cli_devices_round_trip),
		cmocka_unit_test_setup_teardown(test_logger_and_metrics, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vm_config_round_trip, setup, teardown),
		cmocka_unit_test(test_config_file_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
