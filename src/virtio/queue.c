/* STUB: replaced by the split virtqueue implementation. */
#include <errno.h>
#include "queue.h"
int virtq_activate(struct virtq *q, const struct guest_memory *mem) { return -ENOSYS; }
void virtq_reset(struct virtq *q) {}
int virtq_pop(struct virtq *q, struct virtq_req *req) { return -EAGAIN; }
void virtq_push(struct virtq *q, uint16_t head, uint32_t len) {}
bool virtq_should_notify(struct virtq *q) { return false; }
void virtq_set_notify(struct virtq *q, bool enable) {}
bool virtq_has_work(const struct virtq *q) { return false; }
uint64_t iov_to_buf(const struct iovec *iov, int nr, uint64_t offset, void *buf, uint64_t len) { return 0; }
uint64_t buf_to_iov(const struct iovec *iov, int nr, uint64_t offset, const void *buf, uint64_t len) { return 0; }
