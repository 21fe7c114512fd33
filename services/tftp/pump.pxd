# Declarations for pump.py (Cython's "augmenting .pxd"): the C calls it makes and its two
# classes' fields. pump.py is the source; docs/tftp.md "The compiled per-block path".

cdef extern from "sys/epoll.h":
    ctypedef union epoll_data_t:
        void *ptr
        int fd
    cdef struct epoll_event:
        unsigned int events
        epoll_data_t data
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event *event)
    int epoll_wait(int epfd, epoll_event *events, int maxevents, int timeout)
    enum:
        EPOLLIN
        EPOLL_CTL_ADD
        EPOLL_CTL_DEL
        EPOLL_CLOEXEC

cdef extern from "sys/uio.h":
    cdef struct iovec:
        void *iov_base
        size_t iov_len

cdef extern from "sys/socket.h":
    cdef struct msghdr:
        iovec *msg_iov
        size_t msg_iovlen
    ssize_t c_recv "recv" (int fd, void *buf, size_t n, int flags)
    ssize_t c_sendmsg "sendmsg" (int fd, const msghdr *message, int flags)

cdef extern from "math.h":
    double fabs(double x)

cdef extern from "string.h":
    void *memset(void *s, int c, size_t n)

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE

cdef extern from "errno.h":
    int errno

cdef extern from "unistd.h":
    int c_close "close" (int fd)


cdef class Slot:
    cdef public int fd
    cdef public int block
    cdef public double timer_at
    cdef public int recheck
    cdef int count
    cdef public object session
    cdef public object transfer
    # the session's per-block state while lent (ReadSession.lockstep_lend)
    cdef public long long sent
    cdef object payload          # the block sent and not ACKed (when not in the window)
    cdef bint payload_in_win
    cdef Py_ssize_t payload_off
    cdef Py_ssize_t payload_len
    cdef object ahead            # the block read ahead (when not in the window)
    cdef bint ahead_in_win
    cdef Py_ssize_t ahead_off
    cdef Py_ssize_t ahead_len
    cdef object source
    cdef object read
    cdef object blksize_obj
    cdef Py_ssize_t blksize
    cdef public long long bytes_sent
    cdef double sent_at
    cdef bint timed
    cdef double srtt
    cdef bint has_srtt
    cdef double rttvar
    cdef double rto
    cdef double rto_min
    cdef double rto_max
    cdef public double deadline
    cdef public bint dirty
    cdef bint last               # the block sent last was the file's last
    cdef bint gone
    # what the source holds in memory (its window()), held while lent
    cdef object win
    cdef Py_buffer win_view
    cdef bint win_held
    cdef Py_ssize_t win_pos
    cdef Py_ssize_t win_end
    cdef Py_ssize_t taken
    cdef object win_slice(self, Py_ssize_t offset, Py_ssize_t size)
    cdef int take_window(self)
    cdef int drop_window(self)
    cdef int read_ahead(self)
    cdef bint serve(self, char *buf, double now)


cdef class Pump:
    cdef int epfd
    cdef dict slots
    cdef list dead
    cdef bint serving
    cdef object loop
    cdef object clock
    cdef public unsigned long long blocks
    cdef public unsigned long long wakeups
