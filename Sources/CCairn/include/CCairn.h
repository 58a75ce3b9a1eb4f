// C shim for Cairn: what Swift cannot import from liburing, epoll, eventfd and glibc's GNU
// extensions, plus CRC32C. Kept small: everything that imports cleanly is used directly.
#ifndef CCAIRN_H
#define CCAIRN_H

// Must come before <liburing.h>: it defines _XOPEN_SOURCE before its system includes, which
// changes glibc struct layouts against Swift's Glibc module (fd_set mismatch).
#include <sys/types.h>
#include <stdint.h>
#include <stddef.h>
#include <liburing.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

// Macros built on enum constants do not import into Swift.
static const uint8_t CCAIRN_IOSQE_IO_LINK = IOSQE_IO_LINK;
static const uint8_t CCAIRN_IOSQE_ASYNC = IOSQE_ASYNC;
// GNU-only flags: Swift's Glibc module is built without _GNU_SOURCE.
static const int CCAIRN_O_DIRECT = __O_DIRECT;
static const int CCAIRN_FALLOC_FL_KEEP_SIZE = 0x01;
static const int CCAIRN_FALLOC_FL_PUNCH_HOLE = 0x02;
static const int CCAIRN_SEEK_DATA = 3;
static const int CCAIRN_SEEK_HOLE = 4;
static const int CCAIRN_RWF_DSYNC = 0x00000002;  /* linux/fs.h: per-write O_DSYNC */

int ccairn_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);

// io_uring_for_each_cqe is a macro: reap up to `max` completions without a syscall.
static inline unsigned ccairn_uring_reap(struct io_uring *ring, uint64_t *user_data,
                                         int32_t *res, unsigned max) {
    unsigned head, n = 0;
    struct io_uring_cqe *cqe;
    io_uring_for_each_cqe(ring, head, cqe) {
        if (n == max) break;
        user_data[n] = cqe->user_data;
        res[n] = cqe->res;
        n++;
    }
    if (n) io_uring_cq_advance(ring, n);
    return n;
}

// io_uring's io-wq workers (which run every I/O the file system cannot do asynchronously, e.g.
// O_DIRECT on tmpfs) do not inherit the process's CPU affinity. When the calling thread is
// restricted to fewer CPUs than are online (taskset, a CPU manager), give the ring's io-wq the
// same set, so the work stays where the operator put the process. Returns the number of CPUs
// registered, 0 when unrestricted, or -errno.
int ccairn_uring_follow_affinity(struct io_uring *ring);

// Files in memory (tmpfs, ramfs), whose I/O the loop does itself with these syscalls (GNU or
// Linux-only calls, wrapped here): 1 if `fd` is on tmpfs or ramfs, 0 if not or unknown.
int ccairn_memory_backed(int fd);
// pwritev2 with RWF_DSYNC; fallocate punching a hole (size kept). Both -1 with errno on failure.
ssize_t ccairn_pwrite_dsync(int fd, const void *buf, size_t len, off_t offset);
int ccairn_punch_hole(int fd, off_t offset, off_t len);
// The calling thread's involuntary context switches (getrusage RUSAGE_THREAD, GNU-only); -1 on
// failure. A sched_yield that ran another thread counts as one.
long ccairn_thread_involuntary_switches(void);

// The loop thread marks itself so executors and I/O calls know where they run.
void ccairn_set_loop_id(uint64_t id);
// Names the calling thread (at most 15 bytes; GNU-only, so wrapped here).
void ccairn_set_thread_name(const char *name);
uint64_t ccairn_loop_id(void);

// CRC32C (Castagnoli). `crc` is the running value in its non-inverted form: start with 0,
// ccairn_crc32c handles the pre/post inversion so chained calls compose.
uint32_t ccairn_crc32c(uint32_t crc, const void *data, size_t len);
uint32_t ccairn_crc32c_sw(uint32_t crc, const void *data, size_t len);
int ccairn_have_sse42(void);

// Signals as bytes on a non-blocking self-pipe (the handler only write()s, which is
// async-signal-safe), so the event loop can wait for SIGINT/SIGTERM in its epoll set.
// Returns the pipe's read end, or -1.
int ccairn_signal_pipe(const int *signals, int count);

// Counts jobs the Swift runtime hands to its global executor (swift_task_enqueueGlobal_hook), per
// event loop whose thread enqueued them, so tests can assert that the data path never hops to
// the global pool. Off unless installed.
void ccairn_count_global_enqueues(void);
uint64_t ccairn_global_enqueues_from_loop(uint64_t loop_id);

#endif
