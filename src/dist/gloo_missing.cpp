// Builds without Gloo (the GPU machine's image has none): CPU ranks cannot span processes there.
#include "dist/gloo_group.h"
#include "util/error.h"

namespace ds::dist {

std::unique_ptr<Group> make_gloo_group(Store&, const std::string& name, int, int, const std::string&) {
  fail("Gloo group '{}': this dsserve was built without Gloo (libgloo-dev): CPU ranks cannot span nodes", name);
}
bool have_gloo() { return false; }

}  // namespace ds::dist
