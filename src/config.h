/* What the user asked for: filled by the CLI (or later the API), read by the VM. */
#ifndef KVMLITE_CONFIG_H
#define KVMLITE_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

enum console_mode { CONSOLE_SERIAL, CONSOLE_NONE };
enum reboot_action { REBOOT_EXIT, REBOOT_RESTART };

struct vm_config {
	const char *kernel_path;  /* NULL: the embedded guest */
	const char *initrd_path;
	const char *cmdline;      /* replaces the default command line */
	const char *append;       /* appended to the command line */
	int nr_cpus;
	uint64_t ram_size;
	enum console_mode console;
	enum reboot_action on_reboot;
	bool stats;               /* print exit and fallback counts at exit */
	bool testdev;             /* the test device used by guest tests */
	const char *api_sock;     /* --api-sock: serve the API there ("auto": the default directory) */
	const char *config_file;  /* --config-file: Firecracker JSON, start at once */
};

#endif
