#include "tokenizer/byte_level.h"

#include "tokenizer/utf8.h"

namespace ds::tok::byte_level {
namespace {
struct Tables {
  std::array<char32_t, 256> cp{};
  std::array<std::string, 256> utf8;
  std::array<int16_t, 324> byte_of_cp{};  // code points used are < 256 + 68
  Tables() {
    byte_of_cp.fill(-1);
    // Printable Latin-1 bytes keep their code point; the other 68 go to 256, 257, ... in order.
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      cp[b] = printable ? char32_t(b) : next++;
      utf8::append_cp(utf8[b], cp[b]);
      byte_of_cp[cp[b]] = int16_t(b);
    }
  }
};
const Tables& tables() {
  static const Tables t;
  return t;
}
}  // namespace

char32_t byte_to_cp(uint8_t b) { return tables().cp[b]; }

const std::array<std::string, 256>& byte_to_utf8() { return tables().utf8; }

std::string token_to_bytes(std::string_view token) {
  const Tables& t = tables();
  std::string out;
  out.reserve(token.size());
  for (size_t i = 0; i < token.size();) {
    char32_t cp;
    size_t n = utf8::decode_at(token, i, cp);
    if (n == 0 || cp >= t.byte_of_cp.size() || t.byte_of_cp[cp] < 0) return std::string(token);
    out += char(t.byte_of_cp[cp]);
    i += n;
  }
  return out;
}

std::string bytes_to_token(std::string_view bytes) {
  std::string out;
  for (unsigned char b : bytes) out += tables().utf8[b];
  return out;
}

}  // namespace ds::tok::byte_level
