// `dsserve serve` over several nodes (--nnodes N --node-rank R --dist-init-addr HOST:PORT, SGLang's
// flags): one process per node, each with its consecutive share of the ranks (world / N). Node 0 serves
// HTTP and runs the engine; it listens on HOST:PORT, the other nodes connect (dist/control_channel.h).
// In order: the rendezvous (node 0's key-value store: Gloo addresses on the CPU, NCCL unique ids on GPUs)
// while every node makes its ranks' groups and loads their weights; each node's memory report; node 0's
// KV pool plan and runner settings to every node (the pools must match); every node records its CUDA
// graphs (together: the recordings hold collectives); then the steps (runtime/remote_nodes.h).
#pragma once
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cli/serve_replica.h"
#include "dist/control_channel.h"
#include "runtime/model_runner.h"
#include "runtime/replica.h"

namespace ds::cli {

struct NodeFlags {
  int nnodes = 1, node_rank = 0;
  std::string dist_init_addr;
};

// Checks a multi-node layout; throws naming the flag.
void validate_nodes(const NodeFlags& f, const runtime::ParallelConfig& p, const std::string& device);

// This node's place in the deployment and its channel to the others.
class NodeSet {
 public:
  // Node 0 waits for the others (a log line says where); node R > 0 connects to node 0.
  NodeSet(const NodeFlags& f, const runtime::ParallelConfig& p);
  ~NodeSet();
  int node_rank() const { return f_.node_rank; }
  int first_rank() const { return first_; }
  int ranks() const { return ranks_; }

  // This node's ranks: groups made across nodes through the rendezvous, then their weights.
  runtime::Replica load(const std::string& model_path, const ReplicaFlags& rf);

  // Node 0: each other node's memory report after loading -> the tightest (available, reserved) bytes.
  std::pair<int64_t, int64_t> tightest_memory(int64_t available, int64_t reserved);
  // Node 0: the runner settings every node's runners take (same pools, same recordings).
  void send_config(const runtime::RunnerConfig& rc, int32_t max_batch, int32_t max_context);
  void wait_ready();  // every other node has its runners and recordings
  std::vector<dist::Connection*> connections();

  // Node R > 0: everything after load: the report, node 0's settings, runners, recordings, then steps until
  // node 0 stops. Returns the process's exit code.
  int serve_as_worker(runtime::Replica replica, const ReplicaFlags& rf);

 private:
  dist::Store& store();
  NodeFlags f_;
  runtime::ParallelConfig p_;
  int first_ = 0, ranks_ = 0;
  std::string host_;  // the address other nodes reach this node's ranks at
  std::vector<std::unique_ptr<dist::Connection>> nodes_;  // node 0: nodes 1..N-1
  std::unique_ptr<dist::Connection> node0_;                // node R > 0
  std::unique_ptr<dist::LocalStore> local_store_;
  std::unique_ptr<dist::RemoteStore> remote_store_;
  std::vector<std::thread> store_servers_;  // node 0, during the rendezvous
};

}  // namespace ds::cli
