// The matcher's parse state: a set of stacks of automaton nodes, stored as frames in an arena.
// A frame is (node, parent frame); frames are hash-consed, so equal stacks are one id and a state
// is a short list of frame ids (the "kernel": the tops right after a byte, plus the callers they
// can return to without reading a byte). The arena only grows while bytes are accepted; rollback
// and speculative walks (token masks) cut it back to a mark.
#pragma once
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "grammar/pda.h"

namespace ds::grammar {

inline constexpr uint32_t kRootParent = 0xFFFFFFFFu;  // below the root rule: the input may end here
inline constexpr uint32_t kLocalBottom = 0xFFFFFFFEu; // below a rule walked alone (token_masks.cpp)

struct Frame {
  uint32_t node;
  uint32_t parent;  // a frame id, kRootParent or kLocalBottom
};

class FrameArena {
 public:
  uint32_t get(uint32_t node, uint32_t parent);
  const Frame& operator[](uint32_t id) const { return frames_[id]; }
  size_t size() const { return frames_.size(); }
  // Forgets every frame created since size() was `mark`.
  void truncate(size_t mark);

 private:
  std::vector<Frame> frames_;
  std::unordered_map<uint64_t, uint32_t> ids_;
};

using Kernel = std::vector<uint32_t>;

// Moves kernels forward byte by byte. Holds scratch space only; cheap to keep one per matcher.
class StackStepper {
 public:
  StackStepper(const Pda& pda, FrameArena& arena) : pda_(pda), arena_(arena) {}
  // The frames reachable from `kernel` without reading a byte (calls and returns).
  // `exits` reports whether a frame over kLocalBottom can return (the walked rule may end here).
  const std::vector<uint32_t>& closure(const Kernel& kernel, bool* exits = nullptr);
  // The kernel after reading b from `kernel` (empty: b is not allowed).
  void advance(const Kernel& kernel, uint8_t b, Kernel& out);
  // Same from a closure already computed by closure().
  void advance_closure(const std::vector<uint32_t>& closure, uint8_t b, Kernel& out);
  // Adds the callers a frame can return to without reading (kept in kernels so that a token mask
  // can be read off per frame, token_masks.h).
  void add_returns(Kernel& kernel);
  // The whole input may end here.
  bool can_finish(const Kernel& kernel) const;
  Kernel start_kernel(uint32_t node, uint32_t parent);

 private:
  bool mark(uint32_t id);
  const Pda& pda_;
  FrameArena& arena_;
  std::vector<uint32_t> marks_;
  uint32_t epoch_ = 0;
  std::vector<uint32_t> closure_;
};

}  // namespace ds::grammar
