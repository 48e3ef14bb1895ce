// KvTransfer over UCX's ucp tag messages. One worker, driven by one thread of its own that makes every UCX
// call (thread mode single): sends are queued to it; arrivals are found by probing for any tag (the tag is
// the room) and received into a buffer of the announced size, so the receiver needs no sizes in advance.
// Endpoints are made from the peer's worker address (from the bootstrap) and kept per address; UCX chooses
// the lanes: shared memory on one host, TCP or RDMA (rc/dc verbs) across hosts.
#include <ucp/api/ucp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <list>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "disagg/kv_transfer.h"
#include "util/error.h"
#include "util/log.h"

namespace ds::disagg {

namespace {

using Clock = std::chrono::steady_clock;

void check(ucs_status_t s, const char* what) {
  if (s != UCS_OK) fail("UCX: {} failed: {}", what, ucs_status_string(s));
}

struct SendOp {
  HostBytes data;
  std::function<void(const std::string&)> done;
  Clock::time_point deadline;
  void* req = nullptr;
  bool complete = false;
  bool cancelled = false;
  ucs_status_t status = UCS_OK;
};

struct RecvOp {
  uint64_t room = 0;
  HostBytes data;
  void* req = nullptr;
  bool complete = false;
  ucs_status_t status = UCS_OK;
};

struct SendJob {
  std::string address;
  uint64_t room = 0;
  HostBytes data;
  double timeout_s = 0;
  std::function<void(const std::string&)> done;
};

class UcxTransfer final : public KvTransfer {
 public:
  UcxTransfer() {
    ucp_params_t params{};
    params.field_mask = UCP_PARAM_FIELD_FEATURES;
    params.features = UCP_FEATURE_TAG;
    if (peer_error_handling()) allow_shared_memory_lanes();
    ucp_config_t* config = nullptr;
    check(ucp_config_read(nullptr, nullptr, &config), "ucp_config_read");
    const ucs_status_t s = ucp_init(&params, config, &context_);
    ucp_config_release(config);
    check(s, "ucp_init");
    ucp_worker_params_t wp{};
    wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    wp.thread_mode = UCS_THREAD_MODE_SINGLE;
    if (ucs_status_t ws = ucp_worker_create(context_, &wp, &worker_); ws != UCS_OK) {
      ucp_cleanup(context_);
      check(ws, "ucp_worker_create");
    }
    ucp_address_t* addr = nullptr;
    size_t len = 0;
    check(ucp_worker_get_address(worker_, &addr, &len), "ucp_worker_get_address");
    address_.assign(reinterpret_cast<const char*>(addr), len);
    ucp_worker_release_address(worker_, addr);
    thread_ = std::thread([this] { loop(); });
  }

  ~UcxTransfer() override {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    thread_.join();
  }

  std::string name() const override { return "ucx"; }
  std::string local_address() const override { return address_; }

  void send(const std::string& peer_address, uint64_t room, HostBytes data, double timeout_s,
            std::function<void(const std::string&)> done) override {
    std::lock_guard lk(mu_);
    jobs_.push_back({peer_address, room, std::move(data), timeout_s, std::move(done)});
  }

  void set_receiver(std::function<void(uint64_t, HostBytes)> receive) override {
    std::lock_guard lk(mu_);
    receive_ = std::move(receive);
  }

  void set_buffers(std::function<HostBytes(size_t)> alloc) override {
    std::lock_guard lk(mu_);
    alloc_ = std::move(alloc);
  }

 private:
  static void on_send(void* req, ucs_status_t status, void* user) {
    auto* op = static_cast<SendOp*>(user);
    op->complete = true;
    op->status = status;
  }
  static void on_recv(void* req, ucs_status_t status, const ucp_tag_recv_info_t*, void* user) {
    auto* op = static_cast<RecvOp*>(user);
    op->complete = true;
    op->status = status;
  }
  static void on_ep_error(void* arg, ucp_ep_h ep, ucs_status_t status) {
    auto* self = static_cast<UcxTransfer*>(arg);
    spdlog::warn("UCX: a peer endpoint failed: {}", ucs_status_string(status));
    self->broken_.push_back(ep);
  }

  ucp_ep_h endpoint(const std::string& address) {
    if (auto it = eps_.find(address); it != eps_.end()) return it->second;
    ucp_ep_params_t ep{};
    ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                    UCP_EP_PARAM_FIELD_ERR_HANDLER;
    ep.address = reinterpret_cast<const ucp_address_t*>(address.data());
    ep.err_mode = peer_error_handling() ? UCP_ERR_HANDLING_MODE_PEER : UCP_ERR_HANDLING_MODE_NONE;
    ep.err_handler.cb = &UcxTransfer::on_ep_error;
    ep.err_handler.arg = this;
    ucp_ep_h h = nullptr;
    check(ucp_ep_create(worker_, &ep, &h), "ucp_ep_create");
    eps_[address] = h;
    spdlog::info("UCX: endpoint to a peer over {}", lanes_of(h));
    return h;
  }

  // Peer error handling (a dead peer fails the send at once) excludes the transports that cannot detect
  // one. UCX's shared-memory FIFOs (posix, sysv) detect a dead peer only when asked to (their
  // *_ERROR_HANDLING settings, off by default: allow_shared_memory_lanes turns them on), so that two servers
  // of one host need not talk over TCP loopback; the zero-copy lanes (cma, knem, xpmem) never qualify.
  // DSSERVE_UCX_ERR_MODE=none lets UCX pick every lane; a dead peer is then seen by the transfer's own
  // timeout and the bootstrap connection breaking (not by UCX), and across hosts a transport error with no
  // handler may be fatal to the process: keep the default (peer) unless both sides share a host.
  static bool peer_error_handling() {
    static const bool peer = [] {
      const char* e = std::getenv("DSSERVE_UCX_ERR_MODE");
      const std::string v = e ? e : "peer";
      DS_CHECK(v == "peer" || v == "none", "DSSERVE_UCX_ERR_MODE must be peer or none, got '{}'", v);
      return v == "peer";
    }();
    return peer;
  }

  // Turns on peer-failure detection in the shared-memory transports (UCX >= 1.11) through the environment
  // UCX reads (ucp_config_modify does not reach transport settings in UCX 1.13), unless the user set it
  // (UCX_POSIX_ERROR_HANDLING / UCX_SYSV_ERROR_HANDLING win). Runs once, when the server starts.
  static void allow_shared_memory_lanes() {
    ::setenv("UCX_POSIX_ERROR_HANDLING", "y", 0);
    ::setenv("UCX_SYSV_ERROR_HANDLING", "y", 0);
  }

  // The transports an endpoint's lanes use ("posix/memory", "tcp/lo", "rc_mlx5/mlx5_0:1", ...), from
  // ucp_ep_print_info's "lane[i]: k:transport/device.n ..." lines: what carries the KV, in the log.
  static std::string lanes_of(ucp_ep_h ep) {
    char* text = nullptr;
    size_t len = 0;
    FILE* f = open_memstream(&text, &len);
    if (!f) return "?";
    ucp_ep_print_info(ep, f);
    std::fclose(f);
    std::string out;
    std::istringstream in(std::string(text ? text : "", len));
    std::free(text);
    std::set<std::string> seen;
    for (std::string line; std::getline(in, line);) {
      const size_t lane = line.find("lane[");
      if (lane == std::string::npos) continue;
      const size_t colon = line.find(':', line.find(']', lane));
      if (colon == std::string::npos) continue;
      std::istringstream words(line.substr(colon + 1));
      std::string w;
      words >> w;  // "3:posix/memory.0"
      if (const size_t c = w.find(':'); c != std::string::npos) w = w.substr(c + 1);
      if (const size_t dot = w.rfind('.'); dot != std::string::npos && w.find('/') < dot) w = w.substr(0, dot);
      if (!w.empty() && seen.insert(w).second) out += (out.empty() ? "" : ", ") + w;
    }
    return out.empty() ? "?" : out;
  }

  void close_endpoint(ucp_ep_h ep) {
    for (auto it = eps_.begin(); it != eps_.end(); ++it)
      if (it->second == ep) {
        eps_.erase(it);
        break;
      }
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    p.flags = UCP_EP_CLOSE_FLAG_FORCE;
    void* r = ucp_ep_close_nbx(ep, &p);
    if (UCS_PTR_IS_PTR(r)) closing_.push_back(r);
  }

  void start_send(SendJob& job) {
    auto op = std::make_unique<SendOp>();
    op->data = std::move(job.data);
    op->done = std::move(job.done);
    op->deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(job.timeout_s));
    try {
      ucp_ep_h ep = endpoint(job.address);
      ucp_request_param_t p{};
      p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
      p.cb.send = &UcxTransfer::on_send;
      p.user_data = op.get();
      void* r = ucp_tag_send_nbx(ep, op->data.data(), op->data.size(), ucp_tag_t(job.room), &p);
      if (r == nullptr) {
        op->done({});
        return;
      }
      if (UCS_PTR_IS_ERR(r)) {
        op->done(fmt::format("UCX send failed: {}", ucs_status_string(UCS_PTR_STATUS(r))));
        return;
      }
      op->req = r;
      sends_.push_back(std::move(op));
    } catch (const std::exception& e) {
      op->done(e.what());
    }
  }

  // A buffer for an arriving message: the owner's (set_buffers), or plain memory if it has none or fails.
  HostBytes buffer(size_t bytes) {
    std::function<HostBytes(size_t)> alloc;
    {
      std::lock_guard lk(mu_);
      alloc = alloc_;
    }
    if (alloc) try {
        return alloc(bytes);
      } catch (const std::exception& e) {
        spdlog::warn("UCX: no buffer of {} bytes from the engine ({}); receiving into plain memory", bytes, e.what());
      }
    return HostBytes::allocate(bytes);
  }

  void probe_arrivals() {
    for (;;) {
      ucp_tag_recv_info_t info{};
      ucp_tag_message_h msg = ucp_tag_probe_nb(worker_, 0, 0, 1, &info);
      if (!msg) return;
      auto op = std::make_unique<RecvOp>();
      op->room = uint64_t(info.sender_tag);
      op->data = buffer(info.length);
      ucp_request_param_t p{};
      p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
      p.cb.recv = &UcxTransfer::on_recv;
      p.user_data = op.get();
      void* r = ucp_tag_msg_recv_nbx(worker_, op->data.data(), op->data.size(), msg, &p);
      if (UCS_PTR_IS_ERR(r)) {
        spdlog::warn("UCX: receiving room {} failed: {}", op->room, ucs_status_string(UCS_PTR_STATUS(r)));
        continue;
      }
      if (r == nullptr) op->complete = true;
      op->req = r;
      recvs_.push_back(std::move(op));
    }
  }

  // Completed operations: their callbacks run outside the lock, on this thread.
  bool reap() {
    bool any = false;
    const auto now = Clock::now();
    for (auto it = sends_.begin(); it != sends_.end();) {
      SendOp& op = **it;
      if (!op.complete && !op.cancelled && now >= op.deadline) {
        op.cancelled = true;
        ucp_request_cancel(worker_, op.req);
      }
      if (!op.complete) {
        ++it;
        continue;
      }
      ucp_request_free(op.req);
      op.done(op.status == UCS_OK ? std::string()
                                  : op.cancelled ? std::string("the KV transfer timed out")
                                                 : fmt::format("UCX send failed: {}", ucs_status_string(op.status)));
      it = sends_.erase(it);
      any = true;
    }
    std::function<void(uint64_t, HostBytes)> receive;
    {
      std::lock_guard lk(mu_);
      receive = receive_;
    }
    for (auto it = recvs_.begin(); it != recvs_.end();) {
      RecvOp& op = **it;
      if (!op.complete) {
        ++it;
        continue;
      }
      if (op.req) ucp_request_free(op.req);
      if (op.status != UCS_OK) spdlog::warn("UCX: receiving room {} failed: {}", op.room, ucs_status_string(op.status));
      else if (receive) receive(op.room, std::move(op.data));
      it = recvs_.erase(it);
      any = true;
    }
    return any;
  }

  void loop() {
    int idle = 0;
    for (;;) {
      std::deque<SendJob> jobs;
      bool stop = false;
      {
        std::lock_guard lk(mu_);
        jobs.swap(jobs_);
        stop = stop_;
      }
      if (stop) break;
      for (auto& j : jobs) start_send(j);
      bool busy = !jobs.empty();
      while (ucp_worker_progress(worker_) != 0) busy = true;
      probe_arrivals();
      busy = reap() || busy;
      for (ucp_ep_h ep : std::exchange(broken_, {})) close_endpoint(ep);
      for (auto it = closing_.begin(); it != closing_.end();) {
        if (ucp_request_check_status(*it) != UCS_INPROGRESS) {
          ucp_request_free(*it);
          it = closing_.erase(it);
        } else {
          ++it;
        }
      }
      // Poll hard while there is traffic, then back off (a millisecond at most) when idle.
      idle = busy ? 0 : idle + 1;
      if (idle > 100) std::this_thread::sleep_for(std::chrono::microseconds(idle > 2000 ? 1000 : 50));
    }
    // Shutdown: cancel what is left, close every endpoint.
    for (auto& op : sends_) ucp_request_cancel(worker_, op->req);
    for (auto& op : recvs_)
      if (op->req && !op->complete) ucp_request_cancel(worker_, op->req);
    while (ucp_worker_progress(worker_) != 0) {}
    for (auto& op : sends_) {
      if (op->complete) ucp_request_free(op->req);
      op->done("the server is shutting down");
    }
    for (auto& op : recvs_)
      if (op->req && op->complete) ucp_request_free(op->req);
    std::vector<ucp_ep_h> eps;
    for (auto& [a, ep] : eps_) eps.push_back(ep);
    for (ucp_ep_h ep : eps) close_endpoint(ep);
    const auto until = Clock::now() + std::chrono::seconds(2);
    while (!closing_.empty() && Clock::now() < until) {
      ucp_worker_progress(worker_);
      for (auto it = closing_.begin(); it != closing_.end();)
        if (ucp_request_check_status(*it) != UCS_INPROGRESS) {
          ucp_request_free(*it);
          it = closing_.erase(it);
        } else {
          ++it;
        }
    }
    ucp_worker_destroy(worker_);
    ucp_cleanup(context_);
  }

  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  std::string address_;
  // The UCX thread's own.
  std::map<std::string, ucp_ep_h> eps_;
  std::list<std::unique_ptr<SendOp>> sends_;
  std::list<std::unique_ptr<RecvOp>> recvs_;
  std::vector<ucp_ep_h> broken_;
  std::vector<void*> closing_;
  // Shared (mu_).
  std::mutex mu_;
  std::deque<SendJob> jobs_;
  std::function<void(uint64_t, HostBytes)> receive_;
  std::function<HostBytes(size_t)> alloc_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace

bool have_ucx() { return true; }

std::unique_ptr<KvTransfer> make_ucx_transfer() { return std::make_unique<UcxTransfer>(); }

}  // namespace ds::disagg
