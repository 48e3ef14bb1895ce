// The ranks of the other nodes in a multi-node deployment (dist/control_channel.h). Node 0 runs the
// engine: every step, RemoteNodes sends each DP group's inputs to every other node before node 0's own
// ranks start, and waits for the nodes' answers while they run. The other nodes run serve_steps: their
// ranks take each step in lock step with node 0's (their collectives meet inside the forward) and answer
// when done, or with the error one of their ranks hit.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "dist/control_channel.h"
#include "runtime/model_runner.h"

namespace ds::runtime {

// What the engine sees of the other nodes (EngineConfig::remote).
class RemoteRanks {
 public:
  virtual ~RemoteRanks() = default;
  // The step's inputs by DP group (null: the group sits this step out), before node 0's ranks run it.
  virtual void send(const std::vector<const StepInput*>& groups) = 0;
  // Every node's answer; throws dist::GroupAborted when a node's rank failed or a node is gone.
  virtual void wait() = 0;
};

class RemoteNodes final : public RemoteRanks {
 public:
  // nodes: connections to nodes 1..N-1. abort_local: ends node 0's ranks' collectives (called when a node
  // fails, so that no rank here waits for a rank there).
  RemoteNodes(std::vector<dist::Connection*> nodes, std::function<void(const std::string&)> abort_local);
  void send(const std::vector<const StepInput*>& groups) override;
  void wait() override;
  void stop();  // tells every node to exit (Bye); errors are ignored (a node may be gone already)

 private:
  [[noreturn]] void broken(const std::string& why, bool origin);
  std::vector<dist::Connection*> nodes_;
  std::function<void(const std::string&)> abort_local_;
};

// A node other than 0: runs every step node 0 sends on this node's runners, by DP group (a group with no
// rank here: empty), until node 0 says Bye or the connection fails (throws). After one of its ranks
// failed it answers every step with the error until node 0 stops. Returns false when a rank failed.
bool serve_steps(dist::Connection& node0, const std::vector<std::vector<ModelRunner*>>& groups);

}  // namespace ds::runtime
