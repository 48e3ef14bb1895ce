#include "dist/control_channel.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "util/error.h"

namespace ds::dist {

namespace {
void write_all(int fd, const void* p, size_t n, const std::string& peer) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t k = ::send(fd, c, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) fail("control channel to {}: send failed: {}", peer, std::strerror(errno));
    c += k;
    n -= size_t(k);
  }
}
void read_all(int fd, void* p, size_t n, const std::string& peer) {
  char* c = static_cast<char*>(p);
  while (n > 0) {
    const ssize_t k = ::recv(fd, c, n, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k == 0) fail("control channel to {}: the connection closed (the node stopped)", peer);
    if (k < 0) fail("control channel to {}: receive failed: {}", peer, std::strerror(errno));
    c += k;
    n -= size_t(k);
  }
}
void no_delay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}
}  // namespace

Connection::Connection(int fd, std::string peer) : fd_(fd), peer_(std::move(peer)) { no_delay(fd_); }
Connection::~Connection() {
  if (fd_ >= 0) ::close(fd_);
}

void Connection::send(const Message& m) {
  std::lock_guard lk(send_mu_);
  const uint32_t type = uint32_t(m.type);
  const uint64_t len = m.body.size();
  char head[12];
  std::memcpy(head, &type, 4);
  std::memcpy(head + 4, &len, 8);
  write_all(fd_, head, sizeof head, peer_);
  write_all(fd_, m.body.data(), m.body.size(), peer_);
}

Message Connection::recv() {
  char head[12];
  read_all(fd_, head, sizeof head, peer_);
  uint32_t type = 0;
  uint64_t len = 0;
  std::memcpy(&type, head, 4);
  std::memcpy(&len, head + 4, 8);
  DS_CHECK(type >= uint32_t(MsgType::Hello) && type <= uint32_t(MsgType::PdFailed) && len < (uint64_t(1) << 34),
           "control channel to {}: a malformed message (type {}, {} bytes): is it another program?", peer_, type, len);
  Message m;
  m.type = MsgType(type);
  m.body.resize(size_t(len));
  read_all(fd_, m.body.data(), m.body.size(), peer_);
  return m;
}

Message Connection::recv_expect(MsgType t) {
  Message m = recv();
  DS_CHECK(m.type == t, "control channel to {}: expected message {}, got {}", peer_, uint32_t(t), uint32_t(m.type));
  return m;
}

void Connection::shutdown() { ::shutdown(fd_, SHUT_RDWR); }

std::string Connection::local_address() const {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  char name[NI_MAXHOST] = "";
  if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0 ||
      ::getnameinfo(reinterpret_cast<sockaddr*>(&a), len, name, sizeof name, nullptr, 0, NI_NUMERICHOST) != 0)
    fail("control channel to {}: cannot read this end's address: {}", peer_, std::strerror(errno));
  return name;
}

std::pair<std::string, int> parse_host_port(const std::string& addr) {
  const size_t colon = addr.rfind(':');
  DS_CHECK(colon != std::string::npos && colon + 1 < addr.size(), "--dist-init-addr '{}': expected HOST:PORT", addr);
  std::string host = addr.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  int port = 0;
  try {
    port = std::stoi(addr.substr(colon + 1));
  } catch (...) {
    port = -1;
  }
  DS_CHECK(!host.empty() && port > 0 && port < 65536, "--dist-init-addr '{}': expected HOST:PORT", addr);
  return {host, port};
}

namespace {
addrinfo* resolve(const std::string& host, int port, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (passive) hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  DS_CHECK(rc == 0 && res, "--dist-init-addr {}:{}: cannot resolve: {}", host, port, gai_strerror(rc));
  return res;
}
}  // namespace

std::vector<std::unique_ptr<Connection>> accept_nodes(const std::string& host, int port, int nnodes,
                                                      std::chrono::seconds timeout) {
  addrinfo* res = resolve(host, port, true);
  int fd = ::socket(res->ai_family, res->ai_socktype, res->ai_protocol);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  const bool bound = fd >= 0 && ::bind(fd, res->ai_addr, res->ai_addrlen) == 0 && ::listen(fd, 64) == 0;
  const std::string why = std::strerror(errno);
  ::freeaddrinfo(res);
  if (!bound) {
    if (fd >= 0) ::close(fd);
    fail("--dist-init-addr {}:{}: node 0 cannot listen there: {}", host, port, why);
  }
  std::vector<std::unique_ptr<Connection>> nodes(size_t(nnodes - 1));
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int have = 0;
  while (have < nnodes - 1) {
    timeval tv{};
    const auto left = std::chrono::duration_cast<std::chrono::seconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      ::close(fd);
      fail("node 0: {} of {} other nodes connected to {}:{} within {} s", have, nnodes - 1, host, port, timeout.count());
    }
    tv.tv_sec = left.count();
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_storage peer{};
    socklen_t plen = sizeof peer;
    const int c = ::accept(fd, reinterpret_cast<sockaddr*>(&peer), &plen);
    if (c < 0) continue;  // timeout or interrupted: the deadline decides
    char name[NI_MAXHOST] = "?";
    ::getnameinfo(reinterpret_cast<sockaddr*>(&peer), plen, name, sizeof name, nullptr, 0, NI_NUMERICHOST);
    auto conn = std::make_unique<Connection>(c, name);
    const Message hello = conn->recv_expect(MsgType::Hello);
    const int r = std::atoi(hello.body.c_str());
    DS_CHECK(r >= 1 && r < nnodes, "node 0: a node says it is node {} of {} (from {})", hello.body, nnodes, name);
    DS_CHECK(!nodes[size_t(r - 1)], "node 0: node {} connected twice (from {})", r, name);
    conn = std::make_unique<Connection>(dup(c), fmt::format("node {} ({})", r, name));
    nodes[size_t(r - 1)] = std::move(conn);
    ++have;
  }
  ::close(fd);
  return nodes;
}

std::unique_ptr<Connection> connect_to_node0(const std::string& host, int port, int node_rank,
                                             std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string last = "not tried";
  while (std::chrono::steady_clock::now() < deadline) {
    addrinfo* res = resolve(host, port, false);
    int fd = ::socket(res->ai_family, res->ai_socktype, res->ai_protocol);
    const bool ok = fd >= 0 && ::connect(fd, res->ai_addr, res->ai_addrlen) == 0;
    last = std::strerror(errno);
    ::freeaddrinfo(res);
    if (ok) {
      auto c = std::make_unique<Connection>(fd, fmt::format("node 0 ({}:{})", host, port));
      c->send({MsgType::Hello, std::to_string(node_rank)});
      return c;
    }
    if (fd >= 0) ::close(fd);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // node 0 may not listen yet
  }
  fail("node {}: cannot reach node 0 at {}:{} within {} s ({})", node_rank, host, port, timeout.count(), last);
}

void LocalStore::set(const std::string& key, const std::string& value) {
  std::lock_guard lk(mu_);
  kv_[key] = value;
  cv_.notify_all();
}

std::string LocalStore::get(const std::string& key, std::chrono::seconds timeout) {
  std::unique_lock lk(mu_);
  DS_CHECK(cv_.wait_for(lk, timeout, [&] { return kv_.count(key) > 0; }),
           "rendezvous: '{}' did not appear within {} s (a node or rank did not come)", key, timeout.count());
  return kv_[key];
}

void LocalStore::serve(Connection& node) {
  for (;;) {
    Message m = node.recv();
    if (m.type == MsgType::RendezvousDone) return;
    const size_t z = m.body.find('\0');
    if (m.type == MsgType::StoreSet && z != std::string::npos) {
      set(m.body.substr(0, z), m.body.substr(z + 1));
    } else if (m.type == MsgType::StoreGet) {
      std::lock_guard lk(mu_);
      auto it = kv_.find(m.body);
      node.send({MsgType::StoreValue, it == kv_.end() ? std::string("0") : "1" + it->second});
    } else {
      fail("rendezvous: unexpected message {} from {}", uint32_t(m.type), node.peer());
    }
  }
}

void RemoteStore::set(const std::string& key, const std::string& value) {
  std::lock_guard lk(mu_);
  c_.send({MsgType::StoreSet, key + '\0' + value});
}

std::string RemoteStore::get(const std::string& key, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    {
      std::lock_guard lk(mu_);
      c_.send({MsgType::StoreGet, key});
      Message m = c_.recv_expect(MsgType::StoreValue);
      if (!m.body.empty() && m.body[0] == '1') return m.body.substr(1);
    }
    DS_CHECK(std::chrono::steady_clock::now() < deadline,
             "rendezvous: '{}' did not appear within {} s (a node or rank did not come)", key, timeout.count());
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace ds::dist
