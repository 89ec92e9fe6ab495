# Unix datagram sockets: the doorbells of awaiting consumers and producers
# (docs/design.md, "Doorbells").  Cython ships no socket declarations.
cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    struct sockaddr:
        pass
    enum:
        AF_UNIX
        SOCK_DGRAM
        SOCK_NONBLOCK
        SOCK_CLOEXEC
        MSG_DONTWAIT
        MSG_NOSIGNAL
    int socket(int domain, int type, int protocol)
    int bind(int fd, const sockaddr *addr, socklen_t addrlen)
    int connect(int fd, const sockaddr *addr, socklen_t addrlen)
    ssize_t send(int fd, const void *buf, size_t n, int flags)
    ssize_t sendto(int fd, const void *buf, size_t n, int flags,
                   const sockaddr *addr, socklen_t addrlen)
    ssize_t recv(int fd, void *buf, size_t n, int flags)

cdef extern from "<sys/un.h>" nogil:
    struct sockaddr_un:
        unsigned short sun_family
        char sun_path[108]
