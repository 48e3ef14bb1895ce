// The control channel of a deployment over several nodes (--nnodes N --node-rank R --dist-init-addr
// HOST:PORT, SGLang's flags): node 0 listens on HOST:PORT, every other node connects to it. One process
// per node (docs/ARCHITECTURE.md, "Parallelism"): node 0 runs the HTTP server, the engine and its own
// ranks; the other nodes run only their ranks, driven over this channel. Messages are framed (a type and
// a payload) over TCP with Nagle off. Before loading, node 0 serves a key-value store over it for the
// collectives' rendezvous (Gloo's addresses, NCCL's unique ids); then it carries the steps.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace ds::dist {

enum class MsgType : uint32_t {
  Hello = 1,        // a node introduces itself: body = its node rank
  StoreSet,         // key \0 value
  StoreGet,         // key -> StoreValue (body: 1 byte found + value)
  StoreValue,
  RendezvousDone,   // a node's ranks have all their groups
  Loaded,           // a node's ranks hold their weights: body = its memory report
  Config,           // node 0's run configuration for the other nodes' runners
  Ready,            // a node's runners exist (and their graphs are recorded)
  Step,             // one step's inputs
  StepDone,         // body empty: fine; else the error of one of the node's ranks
  Bye,              // node 0 stops: the other nodes exit 0
  // Prefill/decode disaggregation's bootstrap (disagg/pd_handoff.cpp), decode server -> prefill server:
  PdHello,          // body: the decode server's KV transfer address
  PdRoom,           // body: a room (decimal) whose KV the decode server waits for
  PdFailed,         // prefill -> decode: room (decimal) \n why it has no KV
};

struct Message {
  MsgType type = MsgType::Hello;
  std::string body;
};

// One end of a TCP connection. send() is thread-safe; recv() is meant for one thread at a time. Both
// throw ds::Error naming the peer when the connection fails or closes.
class Connection {
 public:
  Connection(int fd, std::string peer);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  void send(const Message& m);
  Message recv();
  Message recv_expect(MsgType t);  // recv, and a clear error when another type comes
  const std::string& peer() const { return peer_; }
  std::string local_address() const;  // this end's IP address (the interface that reaches the peer)
  void shutdown();  // wakes a recv blocked on another thread

 private:
  int fd_;
  std::string peer_;
  std::mutex send_mu_;
};

// "HOST:PORT" (IPv6 as [HOST]:PORT) -> host, port; throws naming the flag.
std::pair<std::string, int> parse_host_port(const std::string& addr);

// Node 0: listens on host:port and takes the other nodes' connections, ordered by node rank (index
// r - 1 for node r). Throws when they do not all come within `timeout`.
std::vector<std::unique_ptr<Connection>> accept_nodes(const std::string& host, int port, int nnodes,
                                                      std::chrono::seconds timeout);
// Node r > 0: connects to node 0, retrying while it starts, and says hello.
std::unique_ptr<Connection> connect_to_node0(const std::string& host, int port, int node_rank,
                                             std::chrono::seconds timeout);

// The rendezvous store: a key-value map every rank of every node reads and writes.
class Store {
 public:
  virtual ~Store() = default;
  virtual void set(const std::string& key, const std::string& value) = 0;
  // Blocks until the key exists (or throws after `timeout`).
  virtual std::string get(const std::string& key, std::chrono::seconds timeout = std::chrono::seconds(300)) = 0;
};

// Node 0's store; serve() answers one other node's requests until it says RendezvousDone.
class LocalStore final : public Store {
 public:
  void set(const std::string& key, const std::string& value) override;
  std::string get(const std::string& key, std::chrono::seconds timeout) override;
  void serve(Connection& node);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::string> kv_;
};

// Another node's view of node 0's store, through its connection (requests are serialised; a get that
// finds nothing polls, so one rank waiting never blocks another rank's set).
class RemoteStore final : public Store {
 public:
  explicit RemoteStore(Connection& c) : c_(c) {}
  void set(const std::string& key, const std::string& value) override;
  std::string get(const std::string& key, std::chrono::seconds timeout) override;

 private:
  Connection& c_;
  std::mutex mu_;
};

}  // namespace ds::dist
