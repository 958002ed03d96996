/* STUB: replaced by the virtio PCI transport. */
#include <errno.h>
#include "virtio.h"
#include "vm.h"
int virtio_device_add(struct vm *vm, struct virtio_device *dev) { return -ENOSYS; }
int virtio_watch_fd(struct virtio_device *dev, int fd, uint32_t events, virtio_fd_fn fn) { return -ENOSYS; }
int virtio_unwatch_fd(struct virtio_device *dev, int fd) { return -ENOSYS; }
bool virtio_has_feature(const struct virtio_device *dev, unsigned bit) { return false; }
struct virtq *virtio_queue(struct virtio_device *dev, int q) { return 0; }
void virtio_queue_notify(struct virtio_device *dev, int q) {}
void virtio_queue_kick(struct virtio_device *dev, int q) {}
void virtio_config_changed(struct virtio_device *dev) {}
void virtio_needs_reset(struct virtio_device *dev, const char *why) {}
