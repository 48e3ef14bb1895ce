#include "cli/serve_nodes.h"

#include <future>
#include <nlohmann/json.hpp>

#include "dist/gloo_group.h"
#include "runtime/remote_nodes.h"
#include "util/error.h"
#include "util/log.h"
#ifdef DSSERVE_HAVE_CUDA
#include "dist/nccl_group.h"
#endif

namespace ds::cli {

using dist::Message;
using dist::MsgType;
using Json = nlohmann::json;

namespace {
constexpr std::chrono::seconds kConnectTimeout{600};  // nodes start by hand or by a scheduler: be patient
}

void validate_nodes(const NodeFlags& f, const runtime::ParallelConfig& p, const std::string& device) {
  if (f.nnodes == 1) {
    DS_CHECK(f.node_rank == 0, "--node-rank {} with --nnodes 1", f.node_rank);
    return;
  }
  DS_CHECK(f.nnodes >= 1 && f.node_rank >= 0 && f.node_rank < f.nnodes, "--node-rank {} outside --nnodes {}",
           f.node_rank, f.nnodes);
  DS_CHECK(!f.dist_init_addr.empty(), "--nnodes {}: --dist-init-addr HOST:PORT (node 0's address) is required",
           f.nnodes);
  dist::parse_host_port(f.dist_init_addr);
  DS_CHECK(p.world_size() % f.nnodes == 0, "--nnodes {}: the {} ranks (tp x dp) do not divide over the nodes",
           f.nnodes, p.world_size());
  // Every DP group's first rank draws its tokens with the requests' sampling state, which lives on node 0.
  DS_CHECK(p.dp == 1,
           "--nnodes {} with --dp {}: not available yet (each DP group draws its tokens on its first rank, and draws "
           "on nodes other than 0 are not built); multi-node runs one replica over --tp ranks",
           f.nnodes, p.dp);
  DS_CHECK(device != "cpu" || dist::have_gloo(),
           "--nnodes {} on the CPU needs Gloo (libgloo-dev), which this build was made without", f.nnodes);
}

NodeSet::NodeSet(const NodeFlags& f, const runtime::ParallelConfig& p) : f_(f), p_(p) {
  ranks_ = p.world_size() / f.nnodes;
  first_ = f.node_rank * ranks_;
  const auto [host, port] = dist::parse_host_port(f.dist_init_addr);
  if (f.node_rank == 0) {
    spdlog::info("node 0 of {}: waiting for the other nodes on {}:{} (ranks 0..{} here)", f.nnodes, host, port,
                 ranks_ - 1);
    nodes_ = dist::accept_nodes(host, port, f.nnodes, kConnectTimeout);
    host_ = host;
    local_store_ = std::make_unique<dist::LocalStore>();
    for (auto& n : nodes_) store_servers_.emplace_back([this, c = n.get()] {
        try {
          local_store_->serve(*c);
        } catch (const std::exception& e) {
          spdlog::error("rendezvous with {}: {}", c->peer(), e.what());
        }
      });
    spdlog::info("node 0: all {} nodes connected", f.nnodes);
  } else {
    spdlog::info("node {} of {}: ranks {}..{}, connecting to node 0 at {}:{}", f.node_rank, f.nnodes, first_,
                 first_ + ranks_ - 1, host, port);
    node0_ = dist::connect_to_node0(host, port, f.node_rank, kConnectTimeout);
    host_ = node0_->local_address();
    remote_store_ = std::make_unique<dist::RemoteStore>(*node0_);
  }
}

NodeSet::~NodeSet() {
  for (auto& n : nodes_) n->shutdown();  // a rendezvous still being served ends
  for (auto& t : store_servers_)
    if (t.joinable()) t.join();
}

dist::Store& NodeSet::store() {
  if (local_store_) return *local_store_;
  return *remote_store_;
}

std::vector<dist::Connection*> NodeSet::connections() {
  std::vector<dist::Connection*> out;
  for (auto& n : nodes_) out.push_back(n.get());
  return out;
}

runtime::Replica NodeSet::load(const std::string& model_path, const ReplicaFlags& rf) {
  runtime::ReplicaSpec spec;
  spec.model_path = model_path;
  spec.parallel = p_;
  spec.model_options = rf.model_options;
  spec.random_weights = rf.random_weights;
  spec.first_rank = first_;
  spec.ranks = ranks_;
  spec.make_backend = [&](int r) { return make_rank_backend(rf, r - first_, ranks_); };
  spec.make_groups = [&](const std::vector<backend::Backend*>& bes, int member_first, int group_first,
                         int group_size) -> std::vector<std::unique_ptr<dist::Group>> {
    const std::string key = fmt::format("group{}x{}/", group_first, group_size);
    if (rf.device == "cuda") {
#ifdef DSSERVE_HAVE_CUDA
      if (member_first == group_first) store().set(key + "nccl", dist::nccl_unique_id());
      return dist::make_nccl_groups_across(bes, member_first - group_first, group_size, store().get(key + "nccl"));
#else
      fail("--device cuda: this dsserve was built without CUDA");
#endif
    }
    // Gloo: every member joins on a thread of its own (joining blocks until all ranks have come).
    std::vector<std::future<std::unique_ptr<dist::Group>>> joins;
    for (size_t k = 0; k < bes.size(); ++k)
      joins.push_back(std::async(std::launch::async, [&, k] {
        return dist::make_gloo_group(store(), key, member_first + int(k) - group_first, group_size, host_);
      }));
    std::vector<std::unique_ptr<dist::Group>> out;
    for (auto& j : joins) out.push_back(j.get());
    return out;
  };
  runtime::Replica rep = runtime::load_replica(spec);
  if (node0_) node0_->send({MsgType::RendezvousDone, {}});
  for (auto& t : store_servers_) t.join();  // node 0: every other node's groups are made
  store_servers_.clear();
  return rep;
}

std::pair<int64_t, int64_t> NodeSet::tightest_memory(int64_t available, int64_t reserved) {
  for (auto& n : nodes_) {
    const Json j = Json::parse(n->recv_expect(MsgType::Loaded).body);
    available = std::min(available, j.at("available").get<int64_t>());
    reserved = std::max(reserved, j.at("reserved").get<int64_t>());
  }
  return {available, reserved};
}

void NodeSet::send_config(const runtime::RunnerConfig& rc, int32_t max_batch, int32_t max_context) {
  Json j;
  j["tp"] = p_.tp;
  j["dp"] = p_.dp;
  j["ep"] = p_.ep;
  j["dp_attention"] = p_.dp_attention;
  j["num_pages"] = rc.num_pages;
  j["page_size"] = rc.page_size;
  j["kv_cache_dtype"] = rc.kv_cache_dtype ? std::string(dtype_name(*rc.kv_cache_dtype)) : std::string();
  j["cuda_graph_max_bs"] = rc.cuda_graph_max_bs;
  j["cuda_graph_lazy"] = rc.cuda_graph_lazy;
  j["sample_on_device"] = rc.sample_on_device;
  j["draft_steps"] = rc.draft_steps;
  j["max_batch"] = max_batch;
  j["max_context"] = max_context;
  for (auto& n : nodes_) n->send({MsgType::Config, j.dump()});
}

void NodeSet::wait_ready() {
  for (auto& n : nodes_) n->recv_expect(MsgType::Ready);
}

int NodeSet::serve_as_worker(runtime::Replica replica, const ReplicaFlags& rf) {
  // The memory report: what node 0's KV plan must fit into on this node too.
  const RankMemory mem = replica_memory(replica, rf.device);
  node0_->send({MsgType::Loaded, Json{{"available", mem.available}, {"reserved", mem.reserved}}.dump()});

  const Json c = Json::parse(node0_->recv_expect(MsgType::Config).body);
  DS_CHECK(c.at("tp").get<int>() == p_.tp && c.at("dp").get<int>() == p_.dp && c.at("ep").get<int>() == p_.ep &&
               c.at("dp_attention").get<bool>() == p_.dp_attention,
           "node {}: node 0 runs {} x tp {} dp {} ep {}; this node was started with {}", f_.node_rank,
           c.at("dp_attention").get<bool>() ? "dp attention" : "layout", c.at("tp").get<int>(), c.at("dp").get<int>(),
           c.at("ep").get<int>(), p_.describe());
  runtime::RunnerConfig rc;
  rc.num_pages = c.at("num_pages").get<int32_t>();
  rc.page_size = c.at("page_size").get<int32_t>();
  if (const std::string d = c.at("kv_cache_dtype").get<std::string>(); !d.empty()) {
    DType t;
    DS_CHECK(parse_dtype(d, &t), "node 0 sent an unknown KV cache dtype '{}'", d);
    rc.kv_cache_dtype = t;
  }
  rc.cuda_graph_max_bs = c.at("cuda_graph_max_bs").get<int32_t>();
  rc.cuda_graph_lazy = c.at("cuda_graph_lazy").get<bool>();
  rc.sample_on_device = c.at("sample_on_device").get<bool>();
  rc.draft_steps = c.at("draft_steps").get<int32_t>();
  DS_CHECK(rc.draft_steps == 0 || replica.models[0]->has_mtp(),
           "node {}: speculative decoding needs the MTP layer, which this node's checkpoint lacks", f_.node_rank);
  RankRunners runners = make_rank_runners(replica, rc, p_, rf);
  record_graphs_on_all(runners.all, c.at("max_batch").get<int32_t>(), c.at("max_context").get<int32_t>());
  node0_->send({MsgType::Ready, {}});
  spdlog::info("node {}: ranks {}..{} ready, taking node 0's steps", f_.node_rank, first_, first_ + ranks_ - 1);
  try {
    if (!runtime::serve_steps(*node0_, runners.groups)) {
      spdlog::critical("node {}: stopped after a rank failed", f_.node_rank);
      return 1;
    }
  } catch (const std::exception& e) {
    spdlog::critical("node {}: {}", f_.node_rank, e.what());
    return 1;
  }
  spdlog::info("node {}: node 0 stopped the deployment; exiting", f_.node_rank);
  return 0;
}

}  // namespace ds::cli
