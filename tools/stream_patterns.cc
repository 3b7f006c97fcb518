// Memory throughput of the access patterns the CPU kernels are made of, on
// this machine, outside TensorFlow: what each pass of a kernel could reach at
// best. Standalone (no TensorFlow, no Bazel):
//
//   g++ -O3 -march=native -fopenmp tools/stream_patterns.cc -o /tmp/stream_patterns
//   /tmp/stream_patterns            # --huge: 2 MiB pages (madvise), as NumPy's buffers get
//                                   # --elements N: other array sizes
//
// Each pattern runs over float32 arrays of 110M elements (BERT-base's size,
// far beyond the caches; a multiple of 16384) on OMP_NUM_THREADS threads (default: all cores), in
// blocks of 16384 elements like the kernels; the median of 9 runs is printed
// as counted GB/s (bytes read + bytes written, the convention of the bytes
// floor in tf_opt_plugin/benchmark/ops.py) and as GB/s of reads alone.
#include <omp.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

namespace {

int64_t num_elements = int64_t{110} << 20;  // per array; --elements
constexpr int64_t kBlock = 16384;
constexpr int kLanes = 16;
constexpr int kRuns = 9;

double Now() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

float* Allocate(bool huge) {
  constexpr size_t kHugePage = size_t{1} << 21;
  const size_t bytes =
      (num_elements * sizeof(float) + kHugePage - 1) / kHugePage * kHugePage;
  auto* p = static_cast<float*>(std::aligned_alloc(kHugePage, bytes));
  if (p == nullptr) {
    std::fprintf(stderr, "out of memory\n");
    std::exit(1);
  }
  if (huge) madvise(p, bytes, MADV_HUGEPAGE);
#pragma omp parallel for
  for (int64_t i = 0; i < num_elements; ++i) p[i] = 1e-3f * static_cast<float>(i % 1000);
  return p;
}

// Sum of squares of 1 or 2 read-only streams (Adafactor pass 1 reads g and w),
// optionally prefetching `ahead` elements ahead. kChains independent vectors
// of partial sums per stream, so that the adds' latency does not bound the
// loop (a single chain halves the rate of the two-stream loop on this machine).
template <int kStreams>
double SumSquares(const float* a, const float* b, int64_t ahead) {
  constexpr int kChains = 4;
  double total = 0.0;
#pragma omp parallel for reduction(+ : total)
  for (int64_t begin = 0; begin < num_elements; begin += kBlock) {
    float sums[kStreams][kChains][kLanes] = {};
    for (int64_t i = begin; i < begin + kBlock; i += kChains * kLanes) {
      if (ahead > 0 && i + ahead < num_elements) {
        for (int c = 0; c < kChains; ++c) {
          __builtin_prefetch(a + i + ahead + c * kLanes, 0, 3);
          if (kStreams == 2) __builtin_prefetch(b + i + ahead + c * kLanes, 0, 3);
        }
      }
      for (int c = 0; c < kChains; ++c) {
        for (int l = 0; l < kLanes; ++l) {
          const float x = a[i + c * kLanes + l];
          sums[0][c][l] += x * x;
          if (kStreams == 2) {
            const float y = b[i + c * kLanes + l];
            sums[kStreams - 1][c][l] += y * y;
          }
        }
      }
    }
    for (auto& stream : sums)
      for (auto& chain : stream)
        for (float x : chain) total += x;
  }
  return total;
}

struct Pattern {
  const char* name;
  int read_streams, write_streams;
  std::function<void()> run;
};

}  // namespace

int main(int argc, char** argv) {
  bool huge = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--huge") == 0) {
      huge = true;
    } else if (std::strcmp(argv[i], "--elements") == 0 && i + 1 < argc) {
      num_elements = std::atoll(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--huge] [--elements N]\n", argv[0]);
      return 2;
    }
  }
  if (num_elements <= 0 || num_elements % kBlock != 0) {
    std::fprintf(stderr, "--elements must be a positive multiple of %lld. Received: %lld\n",
                 static_cast<long long>(kBlock), static_cast<long long>(num_elements));
    return 2;
  }
  float* a = Allocate(huge);
  float* b = Allocate(huge);
  volatile double sink = 0.0;
  const std::vector<Pattern> patterns = {
      {"sum of a^2 (1 read-only stream)", 1, 0,
       [&] { sink = sink + SumSquares<1>(a, nullptr, 0); }},
      {"sum of a^2 + b^2 (2 read-only streams)", 2, 0,
       [&] { sink = sink + SumSquares<2>(a, b, 0); }},
      {"same, prefetching 2 KiB ahead", 2, 0,
       [&] { sink = sink + SumSquares<2>(a, b, 512); }},
      {"b += a (the floor's np.add)", 2, 1,
       [&] {
#pragma omp parallel for
         for (int64_t i = 0; i < num_elements; ++i) b[i] += a[i];
       }},
      {"b -= 1e-9 * a (Adafactor pass 2)", 2, 1,
       [&] {
#pragma omp parallel for
         for (int64_t i = 0; i < num_elements; ++i) b[i] -= 1e-9f * a[i];
       }},
      {"b = a (copy)", 1, 1,
       [&] {
#pragma omp parallel for
         for (int64_t i = 0; i < num_elements; ++i) b[i] = a[i];
       }},
  };
  std::printf("%lld float32 elements per array, %d threads, %s pages\n",
              static_cast<long long>(num_elements), omp_get_max_threads(),
              huge ? "2 MiB (madvise)" : "default");
  std::printf("%-42s %9s %14s %12s\n", "pattern", "ms", "counted GB/s",
              "read GB/s");
  for (const Pattern& p : patterns) {
    p.run();  // warm
    std::vector<double> times;
    for (int r = 0; r < kRuns; ++r) {
      const double start = Now();
      p.run();
      times.push_back(Now() - start);
    }
    std::sort(times.begin(), times.end());
    const double t = times[kRuns / 2];
    const double bytes = 4.0 * num_elements;
    std::printf("%-42s %9.2f %14.1f %12.1f\n", p.name, t * 1e3,
                (p.read_streams + p.write_streams) * bytes / t / 1e9,
                p.read_streams * bytes / t / 1e9);
  }
  return 0;
}
