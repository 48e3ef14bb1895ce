// GlooGroup: CPU ranks in different processes (the nodes of a multi-node deployment on the CPU backend:
// tests and CI), joined by Gloo's TCP collectives (Debian's libgloo-dev; PyTorch's CPU collectives).
// The ranks meet through the control channel's rendezvous store. Ranks of one node are threads, each
// with its own Gloo context over all ranks.
#pragma once
#include <memory>
#include <string>

#include "dist/control_channel.h"
#include "dist/group.h"

namespace ds::dist {

// Rank `rank` of a group of `size` named `name` (ranks of one group share the name); blocks until every
// rank has joined. `host`: the address other nodes reach this one at.
std::unique_ptr<Group> make_gloo_group(Store& store, const std::string& name, int rank, int size,
                                       const std::string& host);
bool have_gloo();  // built with Gloo

}  // namespace ds::dist
