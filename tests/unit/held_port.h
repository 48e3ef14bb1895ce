// HeldPort: a loopback TCP port for tests, held free of other binds for the object's life.
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <stdexcept>
#include <string>

// A port nothing listens on, held for the object's life by a bound socket that does not listen: a connection
// to it is refused, and no bind to port 0 (this process's router included) is handed it meanwhile. A port
// freed at once could come back as the router's own, making the "dead" worker the router itself (CI saw
// that: the request looped until descriptors ran out). With SO_REUSEADDR, as HttpServer binds, a server
// may still take it on purpose (test_router_proxy's loop test; test_dist's control channel listens on one).
struct HeldPort {
  int fd = -1;
  uint16_t port = 0;
  HeldPort() {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      throw std::runtime_error("HeldPort: cannot bind a port");
    port = ntohs(a.sin_port);
  }
  ~HeldPort() { ::close(fd); }
  HeldPort(const HeldPort&) = delete;
  HeldPort& operator=(const HeldPort&) = delete;
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
};
