/* Virtio devices over the modern (1.x) PCI transport.
 *
 * A device file (src/devices/virtio_*.c) fills a struct virtio_device with
 * its ops, features, queue count and config size, and calls
 * virtio_device_add() from its DEVICE_REGISTER init. The transport
 * (virtio/pci.c) does the rest: PCI function and capabilities, feature
 * negotiation, status and reset, queue setup, an ioeventfd per queue, and
 * one worker thread per device that waits on the queues' eventfds and the
 * device's own fds and calls the device there (never on a vCPU thread).
 *
 * BAR 0 layout (32 KiB):
 *   0x0000 common config   0x1000 ISR   0x2000 device config
 *   0x3000 notify (4 bytes per queue)   0x4000 MSI-X table   0x6000 PBA
 *
 * Locking: dev->lock is held around every device callback (worker fds,
 * queue_notify, reset, config access), so a device never sees a reset in the
 * middle of a request. It is recursive: a callback may call the functions
 * below (virtio_queue_notify, virtio_watch_fd, ...), and so may any other
 * thread. While the VM is paused the worker makes no callbacks. */
#ifndef KVMLITE_VIRTIO_H
#define KVMLITE_VIRTIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "pci.h"
#include "queue.h"

struct vm;

/* Device IDs (virtio 1.2, 5) */
#define VIRTIO_ID_NET      1
#define VIRTIO_ID_BLOCK    2
#define VIRTIO_ID_CONSOLE  3
#define VIRTIO_ID_RNG      4
#define VIRTIO_ID_VSOCK    19

/* Device-independent feature bits */
#define VIRTIO_F_INDIRECT_DESC   28
#define VIRTIO_F_EVENT_IDX       29
#define VIRTIO_F_VERSION_1       32
#define VIRTIO_F_ACCESS_PLATFORM 33

/* Device status */
#define VIRTIO_STATUS_ACKNOWLEDGE  1
#define VIRTIO_STATUS_DRIVER       2
#define VIRTIO_STATUS_DRIVER_OK    4
#define VIRTIO_STATUS_FEATURES_OK  8
#define VIRTIO_STATUS_NEEDS_RESET  64
#define VIRTIO_STATUS_FAILED       128

#define VIRTIO_MAX_QUEUES  8
#define VIRTIO_MAX_FDS     8
#define VIRTIO_NO_VECTOR   0xffff

struct virtio_device;

typedef void (*virtio_fd_fn)(struct virtio_device *dev, int fd, uint32_t events);

struct virtio_device_ops {
	/* The driver kicked queue q (or the device asked for a re-poll with
	 * virtio_queue_kick). Drain what you can, push, virtio_queue_notify. */
	void (*queue_notify)(struct virtio_device *dev, int q);
	/* Reads and writes of the device config, already bounds-checked
	 * against config_size. NULL: reads from dev->config, writes ignored. */
	void (*config_read)(struct virtio_device *dev, uint32_t offset, uint8_t *data, uint32_t len);
	void (*config_write)(struct virtio_device *dev, uint32_t offset, const uint8_t *data, uint32_t len);
	/* DRIVER_OK was set: queues are active. May fail (-errno): the
	 * transport then sets NEEDS_RESET. */
	int (*activate)(struct virtio_device *dev);
	/* The driver reset the device (or it is being destroyed): drop
	 * in-flight work and device state; queues are reset by the transport. */
	void (*reset)(struct virtio_device *dev);
	/* vm_destroy(): release the device's resources (fds, memory). */
	void (*destroy)(struct virtio_device *dev);
};

struct virtio_device {
	/* Filled by the device */
	const char *name;              /* for logs and metrics: "virtio-blk0" */
	uint16_t device_id;            /* VIRTIO_ID_* */
	uint64_t features;             /* offered (VERSION_1 is added) */
	int nr_queues;
	uint16_t queue_max_size;       /* power of two, <= VIRTQ_MAX_SIZE */
	uint8_t *config;               /* device config bytes, config_size long */
	uint32_t config_size;          /* <= 0x1000 */
	const struct virtio_device_ops *ops;
	void *priv;

	/* Transport state */
	struct vm *vm;
	pthread_mutex_t lock;
	uint64_t driver_features;
	uint32_t device_feature_select, driver_feature_select;
	uint8_t status;
	uint8_t config_generation;
	uint16_t queue_select;
	uint16_t config_vector;
	uint32_t isr;                  /* bit 0 queue, bit 1 config change */
	struct virtio_queue_state {
		struct virtq vq;
		uint16_t vector;
		bool enabled;          /* queue_enable written 1 */
		int kick_fd;           /* ioeventfd on the notify address */
		bool ioeventfd;        /* kick_fd is bound at ioeventfd_base */
	} queues[VIRTIO_MAX_QUEUES];
	struct pci_device pci;
	uint64_t ioeventfd_base;       /* BAR 0 address the ioeventfds use */
	uint8_t pci_cfg_cap;           /* config offset of the PCI-cfg access capability */
	bool added;                    /* virtio_device_add() set up the transport */
	bool warned;                   /* a NEEDS_RESET was logged at warn level */

	/* Worker thread */
	pthread_t worker;
	bool worker_started;
	bool paused, stopping;         /* under lock; the worker waits on wake */
	pthread_cond_t wake;
	int epoll_fd;
	int stop_fd;
	struct virtio_fd_watch {
		int fd;
		virtio_fd_fn fn;
		uint32_t events;
	} watches[VIRTIO_MAX_FDS];
	int nr_watches;

	/* Counters for metrics (device-specific ones live in priv) */
	uint64_t nr_kicks, nr_interrupts, nr_bad_chains;
};

/* Registers dev as a PCI function; starts its worker. dev must live until
 * vm_destroy(), which stops the worker and calls ops->destroy. */
int virtio_device_add(struct vm *vm, struct virtio_device *dev);

/* Adds fd (EPOLLIN, or events) to the worker's wait set: fn is called on
 * the worker with dev->lock held. Call before or after virtio_device_add. */
int virtio_watch_fd(struct virtio_device *dev, int fd, uint32_t events, virtio_fd_fn fn);
int virtio_unwatch_fd(struct virtio_device *dev, int fd);

/* Negotiated feature bit? */
bool virtio_has_feature(const struct virtio_device *dev, unsigned bit);
/* The queue when it is usable (DRIVER_OK, enabled, not needing reset), else NULL. */
struct virtq *virtio_queue(struct virtio_device *dev, int q);
/* Interrupts the driver for queue q if it wants one (after pushes). */
void virtio_queue_notify(struct virtio_device *dev, int q);
/* Has the worker call queue_notify(q) soon, as if the driver kicked. */
void virtio_queue_kick(struct virtio_device *dev, int q);
/* The config changed: bump generation, config-change interrupt. */
void virtio_config_changed(struct virtio_device *dev);
/* The driver broke the rules: DEVICE_NEEDS_RESET and a config interrupt;
 * the device is quiet until reset. Logs why (once). */
void virtio_needs_reset(struct virtio_device *dev, const char *why);

#endif
