#include "runtime/remote_nodes.h"

#include <cstring>

#include "dist/group.h"
#include "runtime/lock_step.h"
#include "runtime/step_wire.h"
#include "util/error.h"
#include "util/log.h"

namespace ds::runtime {

namespace {
// Body of a Step message: u32 count, then per group u32 length + its encoded input (length 0: sits out).
std::string encode_groups(const std::vector<const StepInput*>& groups) {
  std::string out;
  auto u32 = [&](uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); };
  u32(uint32_t(groups.size()));
  for (const StepInput* in : groups) {
    const std::string b = in ? encode_step(*in) : std::string();
    u32(uint32_t(b.size()));
    out += b;
  }
  return out;
}

std::vector<std::optional<StepInput>> decode_groups(const std::string& body) {
  size_t at = 0;
  auto u32 = [&] {
    DS_CHECK(at + 4 <= body.size(), "a step message ends early");
    uint32_t v;
    std::memcpy(&v, body.data() + at, 4);
    at += 4;
    return v;
  };
  std::vector<std::optional<StepInput>> out(u32());
  for (auto& g : out) {
    const uint32_t n = u32();
    DS_CHECK(at + n <= body.size(), "a step message ends early");
    if (n > 0) g = decode_step(body.substr(at, n));
    at += n;
  }
  return out;
}
}  // namespace

RemoteNodes::RemoteNodes(std::vector<dist::Connection*> nodes, std::function<void(const std::string&)> abort_local)
    : nodes_(std::move(nodes)), abort_local_(std::move(abort_local)) {}

void RemoteNodes::broken(const std::string& why, bool origin) {
  abort_local_(why);
  throw dist::GroupAborted(why, origin);
}

void RemoteNodes::send(const std::vector<const StepInput*>& groups) {
  const dist::Message m{dist::MsgType::Step, encode_groups(groups)};
  for (dist::Connection* c : nodes_) try {
      c->send(m);
    } catch (const std::exception& e) {
      broken(e.what(), true);  // a node is gone
    }
}

void RemoteNodes::wait() {
  // Answers: empty (fine), or '1' / '0' + the error of one of the node's ranks: its own failure (1) or an
  // echo of another rank's (0). A node that is gone counts as a failure of its own.
  std::string error;
  bool origin = false;
  for (dist::Connection* c : nodes_) try {  // every node's answer, also after one failed
      dist::Message m = c->recv_expect(dist::MsgType::StepDone);
      if (m.body.empty()) continue;
      const bool own = m.body[0] == '1';
      if (error.empty() || (own && !origin)) {
        error = m.body.substr(1);
        origin = own;
      }
    } catch (const std::exception& e) {
      if (error.empty() || !origin) {
        error = e.what();
        origin = true;
      }
    }
  if (!error.empty()) broken(error, origin);
}

void RemoteNodes::stop() {
  for (dist::Connection* c : nodes_) try {
      c->send({dist::MsgType::Bye, {}});
    } catch (const std::exception&) {
    }
}

bool serve_steps(dist::Connection& node0, const std::vector<std::vector<ModelRunner*>>& groups) {
  std::string failed;  // after a rank failed the groups are gone: answer every later step with why
  LockStepThreads threads;
  for (;;) {
    dist::Message m = node0.recv();
    if (m.type == dist::MsgType::Bye) return failed.empty();
    DS_CHECK(m.type == dist::MsgType::Step, "node 0 sent message {} where a step was expected", uint32_t(m.type));
    if (!failed.empty()) {
      node0.send({dist::MsgType::StepDone, "0" + failed});
      continue;
    }
    try {
      auto inputs = decode_groups(m.body);
      DS_CHECK(inputs.size() == groups.size(), "a step for {} DP groups, this node has {}", inputs.size(),
               groups.size());
      std::vector<LockStepGroup> steps(groups.size());
      for (size_t g = 0; g < groups.size(); ++g) {
        steps[g].runners = groups[g];
        if (!groups[g].empty() && inputs[g]) steps[g].input = std::move(inputs[g]);
      }
      run_lock_step(steps, {}, &threads);
      node0.send({dist::MsgType::StepDone, {}});
    } catch (const dist::GroupAborted& e) {
      failed = e.what();
      spdlog::critical("{}", failed);
      node0.send({dist::MsgType::StepDone, (e.origin ? "1" : "0") + failed});
    } catch (const std::exception& e) {
      failed = e.what();
      spdlog::critical("{}", failed);
      node0.send({dist::MsgType::StepDone, "1" + failed});
    }
  }
}

}  // namespace ds::runtime
