/* What the user asked for: filled by the CLI (or later the API), read by the VM. */
#ifndef KVMLITE_CONFIG_H
#define KVMLITE_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "sandbox.h"

/* serial: ttyS0 on the 16550; virtio: hvc0 on virtio-console (the serial
 * port stays, silent); none: no console output at all. */
enum console_mode { CONSOLE_SERIAL, CONSOLE_NONE, CONSOLE_VIRTIO };
enum reboot_action { REBOOT_EXIT, REBOOT_RESTART };

#define VM_MAX_DISKS 8
#define VM_MAX_NETS  4
#define VM_MAX_ID    64

/* --disk PATH[,readonly][,id=NAME] */
struct disk_config {
	const char *path;
	bool read_only;
	const char *id;           /* virtio-blk GET_ID string (<= 20 bytes used); NULL: none */
};

/* --net tap=NAME[,mac=MAC] */
struct net_config {
	const char *tap;
	uint8_t mac[6];
	bool has_mac;             /* false: a locally administered MAC derived from the index */
};

/* --vsock cid=N,uds=PATH */
struct vsock_config {
	bool enabled;
	uint32_t guest_cid;       /* >= 3 */
	const char *uds_path;     /* host side: PATH for guest-initiated, PATH_<port> listeners */
};

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

	struct disk_config disks[VM_MAX_DISKS];
	int nr_disks;
	struct net_config nets[VM_MAX_NETS];
	int nr_nets;
	struct vsock_config vsock;
	bool no_rng;              /* --no-rng: leave out virtio-rng (on by default) */
	enum seccomp_mode seccomp; /* --no-seccomp, --seccomp-log; kill by default */

	/* Strings the parser split out of option values; vm_config_free(). */
	char *owned[VM_MAX_DISKS * 2 + VM_MAX_NETS + 1];
	int nr_owned;
};

/* Frees the strings the command-line parser allocated. */
void vm_config_free(struct vm_config *cfg);

#endif
