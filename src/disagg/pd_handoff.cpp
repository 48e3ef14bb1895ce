#include "disagg/pd_handoff.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_set>

#include "dist/control_channel.h"
#include "util/error.h"
#include "util/log.h"

namespace ds::disagg {

namespace {

using Clock = std::chrono::steady_clock;
using dist::Connection;
using dist::Message;
using dist::MsgType;
using runtime::BootstrapRoom;
using runtime::KvArrival;

Clock::time_point after(double s) {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

// A listening TCP socket on host:port (0: any free port).
int listen_on(const std::string& host, int port, int& bound_port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  DS_CHECK(rc == 0 && res, "--disaggregation-bootstrap-port: cannot resolve {}: {}", host, gai_strerror(rc));
  int fd = ::socket(res->ai_family, res->ai_socktype, res->ai_protocol);
  int one = 1;
  if (fd >= 0) ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  const bool ok = fd >= 0 && ::bind(fd, res->ai_addr, res->ai_addrlen) == 0 && ::listen(fd, 64) == 0;
  const std::string why = std::strerror(errno);
  ::freeaddrinfo(res);
  if (!ok) {
    if (fd >= 0) ::close(fd);
    fail("--disaggregation-bootstrap-port {}: cannot listen on {}:{}: {}", port, host, port, why);
  }
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  char serv[NI_MAXSERV] = "0";
  ::getnameinfo(reinterpret_cast<sockaddr*>(&a), len, nullptr, 0, serv, sizeof serv, NI_NUMERICSERV);
  bound_port = std::atoi(serv);
  return fd;
}

// A connection to host:port within `timeout_s` (the prefill server may be starting).
std::unique_ptr<Connection> connect_to(const std::string& host, int port, double timeout_s) {
  const auto deadline = after(timeout_s);
  std::string last = "not tried";
  do {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    const int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
    if (rc != 0 || !res) {
      last = gai_strerror(rc);
    } else {
      int fd = ::socket(res->ai_family, res->ai_socktype, res->ai_protocol);
      const bool ok = fd >= 0 && ::connect(fd, res->ai_addr, res->ai_addrlen) == 0;
      last = std::strerror(errno);
      ::freeaddrinfo(res);
      if (ok) return std::make_unique<Connection>(fd, fmt::format("prefill bootstrap {}:{}", host, port));
      if (fd >= 0) ::close(fd);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  } while (Clock::now() < deadline);
  fail("cannot reach the prefill server's bootstrap at {}:{}: {}", host, port, last);
}

uint64_t parse_room(const std::string& s) {
  try {
    return std::stoull(s);
  } catch (...) {
    fail("bootstrap: a malformed room '{}'", s);
  }
}

// ---------------------------------------------------------------- prefill side

class PrefillHandoff final : public PdHandoff {
 public:
  explicit PrefillHandoff(const PdConfig& cfg) : cfg_(cfg), transfer_(make_kv_transfer(cfg.transfer_backend)) {
    listen_fd_ = listen_on(cfg.bootstrap_host, cfg.bootstrap_port, port_);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~PrefillHandoff() override {
    stop_ = true;
    acceptor_.join();
    ::close(listen_fd_);
    std::vector<std::shared_ptr<Peer>> peers;
    {
      std::lock_guard lk(mu_);
      peers = peers_;
    }
    for (auto& p : peers) p->conn->shutdown();
    for (auto& p : peers) p->reader.join();
    transfer_.reset();  // its callbacks may still touch peers: before they go
  }

  runtime::DisaggMode mode() const override { return runtime::DisaggMode::Prefill; }
  int bootstrap_port() const override { return port_; }
  double timeout_s() const override { return cfg_.timeout_s; }
  void expect(const BootstrapRoom&) override { fail("a prefill server does not receive KV"); }
  void forget(uint64_t) override {}
  std::vector<KvArrival> take_arrivals() override { return {}; }
  void set_wakeup(std::function<void()>) override {}

  void send(const BootstrapRoom& room, HostBytes packed, std::string error) override {
    std::lock_guard lk(mu_);
    staged_[room.room] = {std::move(packed), std::move(error), after(cfg_.timeout_s)};
    match(room.room);
  }

 private:
  struct Peer {
    std::unique_ptr<Connection> conn;
    std::string address;  // its KV transfer address (PdHello)
    std::thread reader;
  };
  struct Staged {
    HostBytes packed;
    std::string error;
    Clock::time_point deadline;
  };
  struct Registered {
    std::shared_ptr<Peer> peer;
    Clock::time_point deadline;
  };

  static void tell_failed(Peer& p, uint64_t room, const std::string& why) {
    try {
      p.conn->send({MsgType::PdFailed, fmt::format("{}\n{}", room, why)});
    } catch (const std::exception&) {  // the decode server is gone: it times out the request itself
    }
  }

  // Under mu_: a room with both its KV and its decode server's registration goes out.
  void match(uint64_t room) {
    auto s = staged_.find(room);
    auto r = registered_.find(room);
    if (s == staged_.end() || r == registered_.end()) return;
    std::shared_ptr<Peer> peer = r->second.peer;
    Staged st = std::move(s->second);
    staged_.erase(s);
    registered_.erase(r);
    if (!st.error.empty()) {
      tell_failed(*peer, room, st.error);
      return;
    }
    const size_t bytes = st.packed.size();
    transfer_->send(peer->address, room, std::move(st.packed), cfg_.timeout_s,
                    [peer, room, bytes](const std::string& error) {
                      if (error.empty()) {
                        spdlog::debug("room {}: {} bytes of KV sent to {}", room, bytes, peer->conn->peer());
                        return;
                      }
                      spdlog::warn("room {}: KV transfer failed: {}", room, error);
                      tell_failed(*peer, room, "KV transfer failed: " + error);
                    });
  }

  void read_peer(std::shared_ptr<Peer> p) {
    try {
      for (;;) {
        Message m = p->conn->recv();
        if (m.type == MsgType::PdHello) {
          std::lock_guard lk(mu_);
          p->address = m.body;
        } else if (m.type == MsgType::PdRoom) {
          const uint64_t room = parse_room(m.body);
          std::lock_guard lk(mu_);
          registered_[room] = {p, after(cfg_.timeout_s)};
          match(room);
        }
      }
    } catch (const std::exception& e) {
      if (!stop_) spdlog::info("bootstrap: {} disconnected", p->conn->peer());
    }
    std::lock_guard lk(mu_);
    for (auto it = registered_.begin(); it != registered_.end();)
      it = it->second.peer == p ? registered_.erase(it) : std::next(it);
  }

  void expire() {
    std::lock_guard lk(mu_);
    const auto now = Clock::now();
    for (auto it = staged_.begin(); it != staged_.end();) {
      if (now < it->second.deadline) {
        ++it;
        continue;
      }
      spdlog::warn("room {}: no decode server asked for its KV within {} s; dropped", it->first, cfg_.timeout_s);
      it = staged_.erase(it);
    }
    for (auto it = registered_.begin(); it != registered_.end();)
      it = now >= it->second.deadline ? registered_.erase(it) : std::next(it);
  }

  void accept_loop() {
    while (!stop_) {
      pollfd pfd{listen_fd_, POLLIN, 0};
      if (::poll(&pfd, 1, 200) > 0) {
        sockaddr_storage a{};
        socklen_t len = sizeof a;
        const int fd = ::accept(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
        if (fd >= 0) {
          char name[NI_MAXHOST] = "?";
          ::getnameinfo(reinterpret_cast<sockaddr*>(&a), len, name, sizeof name, nullptr, 0, NI_NUMERICHOST);
          auto p = std::make_shared<Peer>();
          p->conn = std::make_unique<Connection>(fd, fmt::format("decode server {}", name));
          std::lock_guard lk(mu_);
          peers_.push_back(p);
          p->reader = std::thread([this, p] { read_peer(p); });
        }
      }
      expire();
    }
  }

  PdConfig cfg_;
  std::unique_ptr<KvTransfer> transfer_;
  int listen_fd_ = -1, port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::shared_ptr<Peer>> peers_;
  std::map<uint64_t, Staged> staged_;
  std::map<uint64_t, Registered> registered_;
};

// ---------------------------------------------------------------- decode side

class DecodeHandoff final : public PdHandoff {
 public:
  explicit DecodeHandoff(const PdConfig& cfg) : cfg_(cfg), transfer_(make_kv_transfer(cfg.transfer_backend)) {
    transfer_->set_receiver([this](uint64_t room, HostBytes data) {
      {
        std::lock_guard lk(mu_);
        if (!expected_.erase(room)) return;  // forgotten (aborted, timed out): dropped
        arrivals_.push_back({room, std::move(data), {}});
      }
      wake();
    });
    sender_ = std::thread([this] { send_loop(); });
  }
  ~DecodeHandoff() override {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
      cv_.notify_all();
    }
    sender_.join();
    transfer_.reset();
    std::vector<std::shared_ptr<Prefill>> all;
    {
      std::lock_guard lk(mu_);
      for (auto& [k, p] : prefills_) all.push_back(p);
    }
    for (auto& p : all) p->conn->shutdown();
    for (auto& p : all) p->reader.join();
  }

  runtime::DisaggMode mode() const override { return runtime::DisaggMode::Decode; }
  int bootstrap_port() const override { return 0; }
  double timeout_s() const override { return cfg_.timeout_s; }
  void send(const BootstrapRoom&, HostBytes, std::string) override { fail("a decode server sends no KV"); }
  void set_buffers(std::function<HostBytes(size_t)> alloc) override { transfer_->set_buffers(std::move(alloc)); }

  void expect(const BootstrapRoom& room) override {
    std::lock_guard lk(mu_);
    expected_.insert(room.room);
    outbox_.push_back(room);
    cv_.notify_all();
  }
  void forget(uint64_t room) override {
    std::lock_guard lk(mu_);
    expected_.erase(room);
  }
  std::vector<KvArrival> take_arrivals() override {
    std::lock_guard lk(mu_);
    return std::exchange(arrivals_, {});
  }
  void set_wakeup(std::function<void()> wake) override {
    std::lock_guard lk(wake_mu_);
    wake_ = std::move(wake);
  }

 private:
  struct Prefill {
    std::unique_ptr<Connection> conn;
    std::thread reader;
    std::unordered_set<uint64_t> rooms;  // registered over this connection (mu_)
    bool dead = false;
  };

  void wake() {
    std::lock_guard lk(wake_mu_);
    if (wake_) wake_();
  }

  void fail_room(uint64_t room, const std::string& why) {
    {
      std::lock_guard lk(mu_);
      if (!expected_.erase(room)) return;
      arrivals_.push_back({room, {}, why});
    }
    wake();
  }

  void read_prefill(std::shared_ptr<Prefill> p, std::string key) {
    std::string why = "closed";
    try {
      for (;;) {
        Message m = p->conn->recv();
        if (m.type != MsgType::PdFailed) continue;
        const size_t nl = m.body.find('\n');
        fail_room(parse_room(m.body.substr(0, nl)), nl == std::string::npos ? "failed" : m.body.substr(nl + 1));
      }
    } catch (const std::exception& e) {
      why = e.what();
    }
    std::unordered_set<uint64_t> rooms;
    {
      std::lock_guard lk(mu_);
      p->dead = true;
      rooms.swap(p->rooms);
    }
    for (uint64_t room : rooms) fail_room(room, "the bootstrap connection to the prefill server broke: " + why);
  }

  // The connection to a prefill server's bootstrap (made, with PdHello, on first use; again after it broke).
  std::shared_ptr<Prefill> prefill(const BootstrapRoom& r) {
    const std::string key = fmt::format("{}:{}", r.host, r.port);
    {
      std::lock_guard lk(mu_);
      if (auto it = prefills_.find(key); it != prefills_.end() && !it->second->dead) return it->second;
    }
    auto p = std::make_shared<Prefill>();
    p->conn = connect_to(r.host, r.port, std::min(cfg_.timeout_s, 5.0));
    p->conn->send({MsgType::PdHello, transfer_->local_address()});
    std::shared_ptr<Prefill> old;
    {
      std::lock_guard lk(mu_);
      if (auto it = prefills_.find(key); it != prefills_.end()) old = it->second;
      prefills_[key] = p;
    }
    if (old) old->reader.join();
    p->reader = std::thread([this, p, key] { read_prefill(p, key); });
    return p;
  }

  void send_loop() {
    for (;;) {
      BootstrapRoom r;
      {
        std::unique_lock lk(mu_);
        cv_.wait(lk, [&] { return stop_ || !outbox_.empty(); });
        if (stop_) return;
        r = outbox_.front();
        outbox_.pop_front();
        if (!expected_.count(r.room)) continue;
      }
      try {
        std::shared_ptr<Prefill> p = prefill(r);
        {
          std::lock_guard lk(mu_);
          p->rooms.insert(r.room);
        }
        p->conn->send({MsgType::PdRoom, std::to_string(r.room)});
      } catch (const std::exception& e) {
        fail_room(r.room, e.what());
      }
    }
  }

  PdConfig cfg_;
  std::unique_ptr<KvTransfer> transfer_;
  std::thread sender_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::deque<BootstrapRoom> outbox_;
  std::unordered_set<uint64_t> expected_;
  std::vector<KvArrival> arrivals_;
  std::map<std::string, std::shared_ptr<Prefill>> prefills_;
  std::mutex wake_mu_;
  std::function<void()> wake_;
};

}  // namespace

std::unique_ptr<PdHandoff> make_pd_handoff(const PdConfig& cfg) {
  DS_CHECK(cfg.timeout_s > 0, "--disaggregation-transfer-timeout must be > 0");
  switch (cfg.mode) {
    case runtime::DisaggMode::Prefill: return std::make_unique<PrefillHandoff>(cfg);
    case runtime::DisaggMode::Decode: return std::make_unique<DecodeHandoff>(cfg);
    case runtime::DisaggMode::Null: break;
  }
  fail("make_pd_handoff: --disaggregation-mode null needs no handoff");
}

}  // namespace ds::disagg
