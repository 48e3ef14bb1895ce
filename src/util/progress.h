// A progress line on stderr for long work (checkpoint loading, weight upload, benchmarks).
// Redraws in place on a terminal, prints a few plain lines otherwise, so logs stay readable.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace ds {

class Progress {
 public:
  Progress(std::string label, uint64_t total, std::string unit = "");
  ~Progress();
  void add(uint64_t n);
  void finish();

 private:
  void draw(bool final);
  std::string label_, unit_;
  uint64_t total_, done_ = 0;
  bool tty_, finished_ = false;
  int last_decile_ = -1;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace ds
