#include "grammar/stack_set.h"

namespace ds::grammar {

uint32_t FrameArena::get(uint32_t node, uint32_t parent) {
  const uint64_t key = uint64_t(node) << 32 | parent;
  auto [it, fresh] = ids_.emplace(key, uint32_t(frames_.size()));
  if (fresh) frames_.push_back(Frame{node, parent});
  return it->second;
}

void FrameArena::truncate(size_t mark) {
  for (size_t i = mark; i < frames_.size(); ++i) ids_.erase(uint64_t(frames_[i].node) << 32 | frames_[i].parent);
  frames_.resize(mark);
}

bool StackStepper::mark(uint32_t id) {
  if (marks_.size() < arena_.size()) marks_.resize(arena_.size() + arena_.size() / 2 + 64, 0);
  if (marks_[id] == epoch_) return false;
  marks_[id] = epoch_;
  return true;
}

const std::vector<uint32_t>& StackStepper::closure(const Kernel& kernel, bool* exits) {
  ++epoch_;
  closure_.clear();
  bool ex = false;
  for (uint32_t f : kernel)
    if (mark(f)) closure_.push_back(f);
  for (size_t i = 0; i < closure_.size(); ++i) {
    const Frame fr = arena_[closure_[i]];
    const PdaNode& n = pda_.nodes[fr.node];
    if (n.accepting) {
      if (fr.parent == kLocalBottom) {
        ex = true;
      } else if (fr.parent != kRootParent && mark(fr.parent)) {
        closure_.push_back(fr.parent);
      }
    }
    for (uint32_t e = n.ref_begin; e < n.ref_end; ++e) {
      const RefEdge& re = pda_.ref_edges[e];
      uint32_t ret = arena_.get(re.target, fr.parent);
      uint32_t child = arena_.get(pda_.rule_start[re.rule], ret);
      if (mark(child)) closure_.push_back(child);
    }
  }
  if (exits) *exits = ex;
  return closure_;
}

void StackStepper::advance_closure(const std::vector<uint32_t>& cl, uint8_t b, Kernel& out) {
  out.clear();
  ++epoch_;
  for (uint32_t f : cl) {
    const Frame fr = arena_[f];
    uint32_t t = pda_.step(fr.node, b);
    if (t == UINT32_MAX) continue;
    uint32_t id = arena_.get(t, fr.parent);
    if (mark(id)) out.push_back(id);
  }
  add_returns(out);
}

void StackStepper::advance(const Kernel& kernel, uint8_t b, Kernel& out) {
  // closure() reuses closure_; copy-free because advance_closure only reads it.
  const auto& cl = closure(kernel);
  advance_closure(cl, b, out);
}

void StackStepper::add_returns(Kernel& k) {
  // Marks of the current epoch hold k's members (advance_closure set them).
  for (size_t i = 0; i < k.size(); ++i) {
    const Frame fr = arena_[k[i]];
    if (pda_.nodes[fr.node].can_end && fr.parent != kRootParent && fr.parent != kLocalBottom && mark(fr.parent))
      k.push_back(fr.parent);
  }
}

bool StackStepper::can_finish(const Kernel& kernel) const {
  for (uint32_t f : kernel) {
    const Frame& fr = arena_[f];
    if (fr.parent == kRootParent && pda_.nodes[fr.node].can_end) return true;
  }
  return false;
}

Kernel StackStepper::start_kernel(uint32_t node, uint32_t parent) {
  Kernel k{arena_.get(node, parent)};
  ++epoch_;
  mark(k[0]);
  add_returns(k);
  return k;
}

}  // namespace ds::grammar
