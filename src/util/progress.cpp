#include "util/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace ds {

namespace {
std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int i = 0;
  while (b >= 1024 && i < 4) { b /= 1024; ++i; }
  return fmt::format("{:.1f} {}", b, units[i]);
}
}  // namespace

Progress::Progress(std::string label, uint64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), tty_(isatty(STDERR_FILENO)) {
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

Progress::~Progress() { finish(); }

void Progress::add(uint64_t n) {
  done_ += n;
  auto now = std::chrono::steady_clock::now();
  if (now - start_ < std::chrono::milliseconds(500)) return;  // quick work stays silent
  if (tty_) {
    if (now - last_draw_ > std::chrono::milliseconds(100)) { draw(false); last_draw_ = now; }
  } else {
    int decile = total_ ? static_cast<int>(10 * done_ / total_) : 0;
    if (decile != last_decile_ && decile < 10) { last_decile_ = decile; draw(false); }
  }
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (std::chrono::steady_clock::now() - start_ < std::chrono::milliseconds(500)) return;
  draw(true);
}

void Progress::draw(bool final) {
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double frac = total_ ? double(done_) / double(total_) : 1.0;
  std::string amount = unit_ == "B" ? fmt::format("{} / {}", human_bytes(done_), human_bytes(total_))
                                    : fmt::format("{} / {}{}", done_, total_, unit_.empty() ? "" : " " + unit_);
  std::string rate = unit_ == "B" && secs > 0 ? fmt::format(", {}/s", human_bytes(done_ / secs)) : "";
  int width = 30, filled = static_cast<int>(frac * width);
  std::string bar = std::string(filled, '#') + std::string(width - filled, '.');
  std::fprintf(stderr, "%s%s [%s] %5.1f%% %s (%.1fs%s)%s", tty_ ? "\r" : "", label_.c_str(), bar.c_str(),
               100 * frac, amount.c_str(), secs, rate.c_str(), (final || !tty_) ? "\n" : "");
  std::fflush(stderr);
}

}  // namespace ds
