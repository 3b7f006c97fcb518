// Runs cc/kernels/math/quantization_math.h on inputs from stdin and prints the
// results as hexadecimal bits, one line per command, for
// tests/ops/test_quantization.py to compare with the float64 reference.
// Commands (numbers in hexadecimal, floats as their uint32 bits):
//   map S                 the 256 entries of the signed (S=1) or unsigned map
//   blockwise S N x...    absmax per block, then codes, then dequantized
//   nearest N x...        bfloat16 round-to-nearest-even bits
//   key SEED STEP VAR     the stochastic-rounding key
//   stochastic KEY FIRST N x...   stochastic bfloat16 bits, index FIRST + i
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cc/kernels/math/quantization_math.h"

namespace m = tf_opt_plugin::math;

namespace {

uint64_t ReadHex() {
  uint64_t v = 0;
  if (std::scanf("%" SCNx64, &v) != 1) std::abort();
  return v;
}

std::vector<float> ReadFloats() {
  std::vector<float> x(ReadHex());
  for (float& f : x) {
    const uint32_t bits = static_cast<uint32_t>(ReadHex());
    std::memcpy(&f, &bits, sizeof(f));
  }
  return x;
}

void Print(uint64_t v) { std::printf("%" PRIx64 " ", v); }

}  // namespace

int main() {
  char command[32];
  while (std::scanf("%31s", command) == 1) {
    if (!std::strcmp(command, "map")) {
      const m::DynamicMap& map = m::GetDynamicMap(ReadHex() != 0);
      for (float v : map.value) Print(m::FloatBits(v));
    } else if (!std::strcmp(command, "blockwise")) {
      const bool is_signed = ReadHex() != 0;
      const std::vector<float> x = ReadFloats();
      const int64_t n = static_cast<int64_t>(x.size());
      std::vector<float> absmax;
      for (int64_t b = 0; b < n; b += m::kQuantizationBlockSize) {
        const int64_t end = b + m::kQuantizationBlockSize;
        absmax.push_back(m::BlockAbsMax(x.data(), b, end < n ? end : n));
        Print(m::FloatBits(absmax.back()));
      }
      std::printf("\n");
      std::vector<uint8_t> codes(x.size());
      for (int64_t i = 0; i < n; ++i) {
        const float a = absmax[i / m::kQuantizationBlockSize];
        codes[i] = m::QuantizeValue(x[i], a, is_signed);
        Print(codes[i]);
      }
      std::printf("\n");
      for (int64_t i = 0; i < n; ++i) {
        const float a = absmax[i / m::kQuantizationBlockSize];
        Print(m::FloatBits(m::DequantizeCode(codes[i], a, is_signed)));
      }
    } else if (!std::strcmp(command, "nearest")) {
      for (float v : ReadFloats()) Print(m::Bfloat16RoundNearestEven(v));
    } else if (!std::strcmp(command, "key")) {
      const uint32_t seed = static_cast<uint32_t>(ReadHex());
      const uint32_t step = static_cast<uint32_t>(ReadHex());
      Print(m::StochasticRoundingKey(seed, step,
                                     static_cast<uint32_t>(ReadHex())));
    } else if (!std::strcmp(command, "stochastic")) {
      const uint32_t key = static_cast<uint32_t>(ReadHex());
      const int64_t first = static_cast<int64_t>(ReadHex());
      const std::vector<float> x = ReadFloats();
      for (size_t i = 0; i < x.size(); ++i) {
        const int64_t index = first + static_cast<int64_t>(i);
        Print(m::Bfloat16RoundStochastic(
            x[i], m::StochasticRoundingBits(key, index)));
      }
    } else {
      return 2;
    }
    std::printf("\n");
  }
  return 0;
}
