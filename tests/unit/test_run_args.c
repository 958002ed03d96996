#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "cmd_run.h"
#include "util.h"

static int parse(struct vm_config *cfg, char *err, const char *first, ...)
{
	char *argv[32];
	int argc = 0;
	argv[argc++] = "run";
	va_list ap;
	va_start(ap, first);
	for (const char *a = first; a; a = va_arg(ap, const char *))
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;
	return run_parse_args(argc, argv, cfg, err, 256);
}

static void test_defaults(void **state)
{
	(void)state;
	struct vm_config cfg;
	char err[256];
	assert_int_equal(parse(&cfg, err, NULL), 0);
	assert_null(cfg.kernel_path);
	assert_int_equal(cfg.nr_cpus, 1);
	assert_int_equal(cfg.ram_size, 256ULL << 20);
	assert_int_equal(cfg.console, CONSOLE_SERIAL);
	assert_int_equal(cfg.on_reboot, REBOOT_EXIT);
}

static void test_full_command_line(void **state)
{
	(void)state;
	struct vm_config cfg;
	char err[256];
	assert_int_equal(parse(&cfg, err, "--kernel", "vmlinuz", "--initrd", "initrd.img", "--cpus", "2",
			       "--memory", "512M", "--append", "quiet", "--console", "none",
			       "--on-reboot", "restart", "--stats", NULL), 0);
	assert_string_equal(cfg.kernel_path, "vmlinuz");
	assert_string_equal(cfg.initrd_path, "initrd.img");
	assert_string_equal(cfg.append, "quiet");
	assert_int_equal(cfg.nr_cpus, 2);
	assert_int_equal(cfg.ram_size, 512ULL << 20);
	assert_int_equal(cfg.console, CONSOLE_NONE);
	assert_int_equal(cfg.on_reboot, REBOOT_RESTART);
	assert_true(cfg.stats);
	assert_int_equal(parse(&cfg, err, "-k", "bz", "-c", "4", "-m", "2G", NULL), 0);
	assert_int_equal(cfg.nr_cpus, 4);
	assert_int_equal(cfg.ram_size, 2ULL << 30);
	assert_int_equal(parse(&cfg, err, "--help", NULL), 1);
}

static void test_devices(void **state)
{
	(void)state;
	struct vm_config cfg;
	char err[256];
	assert_int_equal(parse(&cfg, err, "--disk", "root.img", "--disk", "data.img,readonly,id=data1", "--net",
			       "tap=tap0", "--net", "mac=06:00:AC:10:00:02,tap=tap1", "--vsock", "cid=42,uds=/tmp/v.sock",
			       "--console", "virtio", "--no-rng", NULL), 0);
	assert_int_equal(cfg.nr_disks, 2);
	assert_string_equal(cfg.disks[0].path, "root.img");
	assert_false(cfg.disks[0].read_only);
	assert_null(cfg.disks[0].id);
	assert_string_equal(cfg.disks[1].path, "data.img");
	assert_true(cfg.disks[1].read_only);
	assert_string_equal(cfg.disks[1].id, "data1");
	assert_int_equal(cfg.nr_nets, 2);
	assert_string_equal(cfg.nets[0].tap, "tap0");
	assert_false(cfg.nets[0].has_mac);
	assert_string_equal(cfg.nets[1].tap, "tap1");
	assert_true(cfg.nets[1].has_mac);
	static const uint8_t mac[6] = { 0x06, 0x00, 0xAC, 0x10, 0x00, 0x02 };
	assert_memory_equal(cfg.nets[1].mac, mac, 6);
	assert_true(cfg.vsock.enabled);
	assert_int_equal(cfg.vsock.guest_cid, 42);
	assert_string_equal(cfg.vsock.uds_path, "/tmp/v.sock");
	assert_int_equal(cfg.console, CONSOLE_VIRTIO);
	assert_true(cfg.no_rng);
	vm_config_free(&cfg);

	/* Limits and duplicates */
	assert_int_equal(parse(&cfg, err, "--net", "tap=t0", "--net", "tap=t0", NULL), -EINVAL);
	assert_non_null(strstr(err, "given twice"));
	assert_int_equal(parse(&cfg, err, "--vsock", "cid=3,uds=/a", "--vsock", "cid=4,uds=/b", NULL), -EINVAL);
	assert_non_null(strstr(err, "only one"));
	char *argv[2 * VM_MAX_DISKS + 4];
	int argc = 0;
	argv[argc++] = "run";
	for (int i = 0; i <= VM_MAX_DISKS; i++) {
		argv[argc++] = "--disk";
		argv[argc++] = "d.img";
	}
	argv[argc] = NULL;
	assert_int_equal(run_parse_args(argc, argv, &cfg, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "at most"));
}

static void test_bad_input_names_the_problem(void **state)
{
	(void)state;
	struct vm_config cfg;
	char err[256];
	static const struct {
		const char *opt, *val, *expect;
	} cases[] = {
		{ "--memory", "0", "at least 2M" },
		{ "--memory", "12Q", "expected a size" },
		{ "--memory", "99999999999999T", "expected a size" },
		{ "--memory", "4000001", "multiple of 4K" },
		{ "--cpus", "0", "from 1 to" },
		{ "--cpus", "256", "from 1 to" },
		{ "--cpus", "two", "from 1 to" },
		{ "--console", "vga", "serial, virtio or none" },
		{ "--disk", "", "expected PATH" },
		{ "--disk", "a.img,rw", "unknown item 'rw'" },
		{ "--disk", "a.img,id=", "1 to 20 characters" },
		{ "--disk", "a.img,id=abcdefghijklmnopqrstu", "1 to 20 characters" },
		{ "--disk", "a.img,", "trailing comma" },
		{ "--net", "mac=06:00:00:00:00:01", "expected tap=NAME" },
		{ "--net", "tap=", "1 to 15 characters" },
		{ "--net", "tap=t0,mac=06:00:00:00:00", "must look like" },
		{ "--net", "tap=t0,mac=07:00:00:00:00:01", "multicast" },
		{ "--net", "tap=t0,speed=10", "unknown item 'speed=10'" },
		{ "--vsock", "cid=3", "expected cid=N,uds=PATH" },
		{ "--vsock", "cid=2,uds=/v", "from 3 to" },
		{ "--vsock", "cid=x,uds=/v", "from 3 to" },
		{ "--vsock", "cid=4294967295,uds=/v", "from 3 to" },
		{ "--on-reboot", "halt", "exit or restart" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		err[0] = 0;
		assert_int_equal(parse(&cfg, err, cases[i].opt, cases[i].val, NULL), -EINVAL);
		assert_non_null(strstr(err, cases[i].expect));
		assert_non_null(strstr(err, cases[i].opt));
	}
	assert_int_equal(parse(&cfg, err, "--frobnicate", NULL), -EINVAL);
	assert_non_null(strstr(err, "unknown option --frobnicate"));
	assert_int_equal(parse(&cfg, err, "--kernel", NULL), -EINVAL);
	assert_non_null(strstr(err, "needs a value"));
	assert_int_equal(parse(&cfg, err, "stray", NULL), -EINVAL);
	assert_non_null(strstr(err, "stray"));
}

static void test_parse_size(void **state)
{
	(void)state;
	uint64_t v;
	assert_int_equal(parse_size("4096", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(parse_size("1k", &v), 0);
	assert_int_equal(v, 1024);
	assert_int_equal(parse_size("512MiB", &v), 0);
	assert_int_equal(v, 512ULL << 20);
	assert_int_equal(parse_size("3G", &v), 0);
	assert_int_equal(v, 3ULL << 30);
	assert_int_equal(parse_size("", &v), -EINVAL);
	assert_int_equal(parse_size("-1G", &v), -EINVAL);
	assert_int_equal(parse_size("1X", &v), -EINVAL);
	assert_int_equal(parse_size("17179869184T", &v), -EINVAL); /* 2^34 TiB overflows */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_full_command_line),
		cmocka_unit_test(test_devices),
		cmocka_unit_test(test_bad_input_names_the_problem),
		cmocka_unit_test(test_parse_size),
	};
	return cmocka_run_group_tests_name("run_args", tests, NULL, NULL);
}
