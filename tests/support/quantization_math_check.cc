// Runs cc/kernels/math/quantization_math.h on inputs from stdin and prints the
// results as hexadecimal bits, one line per command, for
// tests/ops/test_quantization.py to compare with the float64 reference.
// Commands (numbers in hexadecimal, floats as their uint32 bits):
//   map S                 the 256 entries of the signed (S=1) or unsigned map
//   blockwise S N x...    absmax per block, then codes, then dequantized
//   nearest N x...        bfloat16 round-to-nearest-even bits
//   key SEED STEP VAR     the stochastic-rounding key
//   stochastic KEY FIRST N x...   stochastic bfloat16 bits, index FIRST + i
//   index S               host only: the number of magnitudes in [0, 1] (every
//                         bucket edge and threshold +-2 ulps, and a sweep)
//                         whose ThresholdIndex count, the CPU kernels' table,
//                         differs from CountThresholdsAtOrBelow's
// `blockwise` also checks, on the host, that QuantizeBlock (the CPU kernels'
// loop) writes the codes QuantizeValue gives, and exits with 3 if not.
#include <algorithm>
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
#if !defined(__CUDACC__)
      std::vector<uint8_t> block_codes(x.size());
      for (int64_t b = 0; b < n; b += m::kQuantizationBlockSize) {
        const int64_t count = std::min(m::kQuantizationBlockSize, n - b);
        m::QuantizeBlock(x.data() + b, count,
                         absmax[b / m::kQuantizationBlockSize], is_signed,
                         block_codes.data() + b);
      }
      if (block_codes != codes) return 3;
#endif
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
#if !defined(__CUDACC__)
    } else if (!std::strcmp(command, "index")) {
      const bool is_signed = ReadHex() != 0;
      const m::DynamicMap& map = m::GetDynamicMap(is_signed);
      const m::ThresholdIndex& index = m::GetThresholdIndex(is_signed);
      const uint32_t one = m::FloatBits(1.0f);
      std::vector<uint32_t> probes;
      for (uint32_t bits = 0; bits <= one; bits += 97) probes.push_back(bits);
      for (uint32_t edge = 0; edge <= one; edge += 1u << 15) {
        for (uint32_t d = 0; d < 5; ++d) probes.push_back(edge + d - 2);
      }
      for (float t : map.threshold) {
        for (uint32_t d = 0; d < 5; ++d)
          probes.push_back(m::FloatBits(t) + d - 2);
      }
      int64_t differences = 0;
      for (uint32_t bits : probes) {
        if (bits > one) continue;  // (and the wrapped edge - 2 of 0)
        float a;
        std::memcpy(&a, &bits, sizeof(a));
        differences +=
            index.Count(a) != m::CountThresholdsAtOrBelow(map.threshold, a);
      }
      Print(differences);
      Print(probes.size());
#endif
    } else {
      return 2;
    }
    std::printf("\n");
  }
  return 0;
}
