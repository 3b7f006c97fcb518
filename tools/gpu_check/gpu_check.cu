// Standalone check of tf_opt_plugin's CUDA kernels: no TensorFlow needed.
//
// Compiles the exact device code the op library runs (cc/kernels/gpu/*.cu.h,
// cc/kernels/math/*_math.h: no TensorFlow header) and, for every kernel and
// dtype, on fresh random inputs:
//   * compares every element of every updated buffer with a float64 host
//     reference (written from the published algorithms, not from the kernel
//     math), with a relative bound per dtype; NaN or Inf never passes; guard
//     bytes around every buffer and all scratch are poisoned before each run;
//   * times it with CUDA events (warm-up, median of many runs, inputs larger
//     than L2), measures a device-to-device copy in the same run and prints
//     GB/s and the ratio to the copy;
//   * runs the multi-tensor AdamW, LAMB and Lion steps over the BERT-base
//   variable
//     set of tf_opt_plugin/benchmark/bert_base_shapes.py.
// `--self-test` runs the host-only checks (no GPU needed): the reference
// against published values and against a second formulation (the shared
// math headers on the host), the comparison itself, the chunk map and the
// vector/tail split.
//
// Build and run: tools/gpu_check.sh [--self-test] [options]; --help lists them.
// Exit status: 0 all checks passed; 1 a mismatch (or, with --require-targets,
// a bandwidth target missed); 2 no usable GPU or a CUDA error; 3 bad usage.

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

#include "cc/kernels/gpu/adafactor_kernel.cu.h"
#include "cc/kernels/gpu/adamw_kernel.cu.h"
#include "cc/kernels/gpu/lamb_kernel.cu.h"
#include "cc/kernels/gpu/lion_kernel.cu.h"

namespace {

using namespace tf_opt_plugin;  // NOLINT

// ------------------------------------------------------------------------------------------
// Types

template <typename T>
struct TypeInfo;
template <>
struct TypeInfo<float> {
  using C = float;
  static const char* Name() { return "float32"; }
  static constexpr double kRtol = 2e-5;  // float32 math, a few ulp
};
template <>
struct TypeInfo<double> {
  using C = double;
  static const char* Name() { return "float64"; }
  static constexpr double kRtol = 1e-10;
};
template <>
struct TypeInfo<__half> {
  using C = float;
  static const char* Name() { return "float16"; }
  static constexpr double kRtol =
      1e-3;  // ~2x the rounding of the result (2^-11)
};
template <>
struct TypeInfo<__nv_bfloat16> {
  using C = float;
  static const char* Name() { return "bfloat16"; }
  static constexpr double kRtol =
      8e-3;  // ~2x the rounding of the result (2^-8)
};

// Conversions between a storage type and double go through float, the only
// floating type __half and __nv_bfloat16 convert to and from (double
// converts exactly).
template <typename T>
double ToDouble(T x) {
  if constexpr (std::is_same_v<T, double>) return x;
  return static_cast<double>(static_cast<float>(x));
}
template <typename T>
T FromDouble(double x) {
  if constexpr (std::is_same_v<T, double>) return x;
  return static_cast<T>(static_cast<float>(x));
}

// ------------------------------------------------------------------------------------------
// Output, failures

int g_failures = 0;
int g_target_misses = 0;

void Fail(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  std::fprintf(stdout, "FAIL: ");
  std::vfprintf(stdout, fmt, args);
  std::fprintf(stdout, "\n");
  va_end(args);
  ++g_failures;
}

#define CUDA_OK(expr)                                        \
  do {                                                       \
    const cudaError_t e_ = (expr);                           \
    if (e_ != cudaSuccess) {                                 \
      std::fprintf(stdout, "CUDA error %s at %s:%d: %s\n",   \
                   cudaGetErrorName(e_), __FILE__, __LINE__, \
                   cudaGetErrorString(e_));                  \
      std::exit(2);                                          \
    }                                                        \
  } while (0)

// ------------------------------------------------------------------------------------------
// Random inputs: a counter-based generator, so arrays are filled in parallel
// and a seed reproduces a run.

uint64_t SplitMix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Uniform in [lo, hi).
double Uniform(uint64_t seed, uint64_t stream, uint64_t i, double lo,
               double hi) {
  const uint64_t bits =
      SplitMix(seed ^ SplitMix(stream * 0x100000001b3ull + i));
  return lo + (hi - lo) * (static_cast<double>(bits >> 11) * 0x1.0p-53);
}

template <typename T>
void Fill(std::vector<T>* out, int64_t n, uint64_t seed, uint64_t stream,
          double lo, double hi) {
  out->resize(n);
  T* p = out->data();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i)
    p[i] = FromDouble<T>(Uniform(seed, stream, i, lo, hi));
}

template <typename T>
std::vector<double> Widen(const std::vector<T>& x) {
  std::vector<double> out(x.size());
  const int64_t n = static_cast<int64_t>(x.size());
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = ToDouble(x[i]);
  return out;
}

// ------------------------------------------------------------------------------------------
// Comparison: every element, relative error against max(|ref|, floor) where
// floor = 1e-3 * RMS(ref) (results that cancel to ~0 are judged on the scale
// of the array), bound rtol per dtype. NaN or Inf in either never passes.

struct Comparison {
  double worst = 0.0;  // largest error / bound (<= 1 passes)
  int64_t worst_index = -1;
  int64_t bad = 0;
  int64_t non_finite = 0;
  bool ok() const { return bad == 0 && non_finite == 0; }
};

Comparison CompareDoubles(const double* got, const double* ref, int64_t n,
                          double rtol) {
  double sum_squares = 0.0;
#pragma omp parallel for reduction(+ : sum_squares) schedule(static)
  for (int64_t i = 0; i < n; ++i)
    sum_squares += std::isfinite(ref[i]) ? ref[i] * ref[i] : 0.0;
  const double floor_value =
      std::max(1e-3 * std::sqrt(sum_squares / std::max<int64_t>(n, 1)), 1e-300);
  Comparison c;
#pragma omp parallel
  {
    Comparison local;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      if (!std::isfinite(got[i]) || !std::isfinite(ref[i])) {
        ++local.non_finite;
        if (local.worst_index < 0) local.worst_index = i;
        continue;
      }
      const double err = std::fabs(got[i] - ref[i]) /
                         std::max(std::fabs(ref[i]), floor_value) / rtol;
      if (err > 1.0) ++local.bad;
      if (err > local.worst || local.worst_index < 0) {
        if (err >= local.worst) {
          local.worst = err;
          local.worst_index = i;
        }
      }
    }
#pragma omp critical
    {
      c.bad += local.bad;
      c.non_finite += local.non_finite;
      if (local.worst > c.worst || c.worst_index < 0) {
        c.worst = local.worst;
        c.worst_index = local.worst_index;
      }
    }
  }
  return c;
}

template <typename T>
Comparison Compare(const std::vector<T>& got, const std::vector<double>& ref,
                   double rtol) {
  const std::vector<double> wide = Widen(got);
  return CompareDoubles(wide.data(), ref.data(),
                        static_cast<int64_t>(ref.size()), rtol);
}

// ------------------------------------------------------------------------------------------
// float64 references, from the published algorithms (the same formulas as
// tests/references.py).

struct AdamWParams {
  double lr, beta_1, beta_2, epsilon, weight_decay;
  int64_t step;
};

// One element; vhat null without amsgrad.
void AdamWReference(const AdamWParams& p, bool decay, double g, double* w,
                    double* m, double* v, double* vhat) {
  const double t = static_cast<double>(p.step);
  if (decay) *w = *w - p.lr * p.weight_decay * *w;
  *m = *m + (g - *m) * (1.0 - p.beta_1);
  *v = *v + (g * g - *v) * (1.0 - p.beta_2);
  double denominator = *v;
  if (vhat != nullptr) {
    *vhat = std::max(*vhat, *v);
    denominator = *vhat;
  }
  const double lr_t = p.lr * std::sqrt(1.0 - std::pow(p.beta_2, t)) /
                      (1.0 - std::pow(p.beta_1, t));
  *w = *w - lr_t * *m / (std::sqrt(denominator) + p.epsilon);
}

struct LambParams {
  double lr, beta_1, beta_2, epsilon, weight_decay_rate;
  int64_t step;
};

// One whole tensor (the trust ratio is over the tensor).
void LambReference(const LambParams& p, bool decay, bool adaptation, int64_t n,
                   const double* g, double* w, double* m, double* v) {
  const double t = static_cast<double>(p.step);
  const double wd = decay ? p.weight_decay_rate : 0.0;
  std::vector<double> u(n);
  double w_squares = 0.0, u_squares = 0.0;
#pragma omp parallel for reduction(+ : w_squares, u_squares) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    m[i] = p.beta_1 * m[i] + (1.0 - p.beta_1) * g[i];
    v[i] = p.beta_2 * v[i] + (1.0 - p.beta_2) * g[i] * g[i];
    const double m_hat = m[i] / (1.0 - std::pow(p.beta_1, t));
    const double v_hat = v[i] / (1.0 - std::pow(p.beta_2, t));
    u[i] = m_hat / (std::sqrt(v_hat) + p.epsilon) + wd * w[i];
    w_squares += w[i] * w[i];
    u_squares += u[i] * u[i];
  }
  double ratio = 1.0;
  const double w_norm = std::sqrt(w_squares), u_norm = std::sqrt(u_squares);
  if (adaptation && w_norm > 0.0 && u_norm > 0.0) ratio = w_norm / u_norm;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) w[i] = w[i] - p.lr * ratio * u[i];
}

struct LionParams {
  double lr, beta_1, beta_2, weight_decay;
};

// One element (Chen et al. 2023, Algorithm 2, with Keras's decoupled decay).
void LionReference(const LionParams& p, bool decay, double g, double* w,
                   double* m) {
  const double c = p.beta_1 * *m + (1.0 - p.beta_1) * g;
  const double sign = c > 0.0 ? 1.0 : (c < 0.0 ? -1.0 : 0.0);
  if (decay) *w = *w - p.lr * p.weight_decay * *w;
  *w = *w - p.lr * sign;
  *m = p.beta_2 * *m + (1.0 - p.beta_2) * g;
}

struct AdafactorParams {
  double lr, beta_2_decay, epsilon_1, epsilon_2, clip_threshold;
  int64_t step;
  bool relative_step;
};

// Factored ([batch, rows, cols]; row acc [batch, rows], col acc [batch, cols])
// when cols > 0, else unfactored over rows elements (acc shaped like w).
// The product form v_ij = r_i c_j / mean(r) of the paper.
void AdafactorReference(const AdafactorParams& p, int64_t batch, int64_t rows,
                        int64_t cols, const double* g, double* w,
                        double* row_acc, double* col_acc) {
  const double t = static_cast<double>(p.step);
  const int64_t n = cols > 0 ? batch * rows * cols : rows;
  const double rho =
      p.relative_step ? std::min(p.lr, 1.0 / std::sqrt(t)) : p.lr;
  const double beta_2_t = 1.0 - std::pow(t, p.beta_2_decay);
  double w_squares = 0.0;
#pragma omp parallel for reduction(+ : w_squares) schedule(static)
  for (int64_t i = 0; i < n; ++i) w_squares += w[i] * w[i];
  const double alpha = std::max(p.epsilon_2, std::sqrt(w_squares / n)) * rho;
  std::vector<double> u(n);
  if (cols > 0) {
    for (int64_t b = 0; b < batch; ++b) {
      const double* gb = g + b * rows * cols;
      std::vector<double> col_sums(cols, 0.0);
      double r_sum = 0.0;
      for (int64_t i = 0; i < rows; ++i) {
        double s = 0.0;
        for (int64_t j = 0; j < cols; ++j) {
          const double big_g =
              gb[i * cols + j] * gb[i * cols + j] + p.epsilon_1;
          s += big_g;
          col_sums[j] += big_g;
        }
        double& r = row_acc[b * rows + i];
        r = beta_2_t * r + (1.0 - beta_2_t) * (s / cols);
        r_sum += r;
      }
      for (int64_t j = 0; j < cols; ++j) {
        double& c = col_acc[b * cols + j];
        c = beta_2_t * c + (1.0 - beta_2_t) * (col_sums[j] / rows);
      }
      const double mean_r = r_sum / rows;
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < rows; ++i) {
        for (int64_t j = 0; j < cols; ++j) {
          const double vhat =
              row_acc[b * rows + i] / mean_r * col_acc[b * cols + j];
          u[b * rows * cols + i * cols + j] =
              gb[i * cols + j] / std::sqrt(vhat);
        }
      }
    }
  } else {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      row_acc[i] = beta_2_t * row_acc[i] +
                   (1.0 - beta_2_t) * (g[i] * g[i] + p.epsilon_1);
      u[i] = g[i] / std::sqrt(row_acc[i]);
    }
  }
  double u_squares = 0.0;
#pragma omp parallel for reduction(+ : u_squares) schedule(static)
  for (int64_t i = 0; i < n; ++i) u_squares += u[i] * u[i];
  const double clip =
      std::max(1.0, std::sqrt(u_squares / n) / p.clip_threshold);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) w[i] = w[i] - alpha * (u[i] / clip);
}

// ------------------------------------------------------------------------------------------
// Device buffers with poisoned guards.

constexpr int64_t kGuardBytes = 256;
constexpr unsigned char kGuardByte = 0xA5;

// A device array of n elements of T inside guard bytes; `misalign` shifts it
// by one element so that no 16-byte load is possible (the scalar path).
template <typename T>
struct DeviceArray {
  char* base = nullptr;
  T* data = nullptr;
  int64_t n = 0;
  int64_t bytes = 0;
  DeviceArray() = default;
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  void Allocate(int64_t count, bool misalign) {
    n = count;
    bytes = 2 * kGuardBytes + (count + 1) * static_cast<int64_t>(sizeof(T));
    CUDA_OK(cudaMalloc(&base, bytes));
    CUDA_OK(cudaMemset(base, kGuardByte, bytes));
    data = reinterpret_cast<T*>(base + kGuardBytes) + (misalign ? 1 : 0);
  }
  void Upload(const std::vector<T>& host) {
    CUDA_OK(
        cudaMemcpy(data, host.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> Download() const {
    std::vector<T> host(n);
    CUDA_OK(
        cudaMemcpy(host.data(), data, n * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }
  // The guard bytes before and after the array are untouched.
  bool GuardsIntact() const {
    std::vector<unsigned char> all(bytes);
    CUDA_OK(cudaMemcpy(all.data(), base, bytes, cudaMemcpyDeviceToHost));
    const char* first = reinterpret_cast<const char*>(data);
    const int64_t lo = first - base,
                  hi = lo + n * static_cast<int64_t>(sizeof(T));
    for (int64_t i = 0; i < bytes; ++i) {
      if ((i < lo || i >= hi) && all[i] != kGuardByte) return false;
    }
    return true;
  }
  ~DeviceArray() {
    if (base != nullptr) cudaFree(base);
  }
};

// Scalars in device memory, as the op library passes them.
template <typename C>
struct DeviceScalars {
  C* values = nullptr;
  int64_t* step = nullptr;
  explicit DeviceScalars(const std::vector<C>& v, int64_t step_value) {
    CUDA_OK(cudaMalloc(&values, v.size() * sizeof(C)));
    CUDA_OK(cudaMemcpy(values, v.data(), v.size() * sizeof(C),
                       cudaMemcpyHostToDevice));
    CUDA_OK(cudaMalloc(&step, sizeof(int64_t)));
    CUDA_OK(
        cudaMemcpy(step, &step_value, sizeof(int64_t), cudaMemcpyHostToDevice));
  }
  ~DeviceScalars() {
    cudaFree(values);
    cudaFree(step);
  }
};

struct Scratch {
  void* ptr = nullptr;
  int64_t bytes = 0;
  explicit Scratch(int64_t b) : bytes(std::max<int64_t>(b, 16)) {
    CUDA_OK(cudaMalloc(&ptr, bytes));
  }
  void Poison() {
    CUDA_OK(cudaMemset(ptr, 0xFF, bytes));
  }  // NaN in every float type
  ~Scratch() { cudaFree(ptr); }
};

// ------------------------------------------------------------------------------------------
// Timing

struct Options {
  int64_t elements = int64_t{1} << 26;  // 64M
  uint64_t seed = 0;
  int repeats = 30;
  bool bert = true;
  bool require_targets = false;
  bool self_test = false;
};

Options g_options;
cudaStream_t g_stream = nullptr;
int g_sm_count = 1;
double g_copy_gbs = 0.0;

// Median of `repeats` timings of fn() (each between two events on g_stream),
// after 3 warm-up calls. Milliseconds.
template <typename Fn>
double MedianMs(Fn&& fn, int repeats) {
  cudaEvent_t start, stop;
  CUDA_OK(cudaEventCreate(&start));
  CUDA_OK(cudaEventCreate(&stop));
  for (int i = 0; i < 3; ++i) CUDA_OK(fn());
  CUDA_OK(cudaStreamSynchronize(g_stream));
  std::vector<float> ms(repeats);
  for (int i = 0; i < repeats; ++i) {
    CUDA_OK(cudaEventRecord(start, g_stream));
    CUDA_OK(fn());
    CUDA_OK(cudaEventRecord(stop, g_stream));
    CUDA_OK(cudaEventSynchronize(stop));
    CUDA_OK(cudaEventElapsedTime(&ms[i], start, stop));
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  return ms[repeats / 2];
}

// Device-to-device copy bandwidth (bytes read + written per second) with a
// buffer of `bytes`.
double CopyGbs(int64_t bytes) {
  void *a = nullptr, *b = nullptr;
  CUDA_OK(cudaMalloc(&a, bytes));
  CUDA_OK(cudaMalloc(&b, bytes));
  CUDA_OK(cudaMemset(a, 1, bytes));
  const double ms = MedianMs(
      [&] {
        return cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, g_stream);
      },
      g_options.repeats);
  cudaFree(a);
  cudaFree(b);
  return 2.0 * bytes / (ms * 1e-3) / 1e9;
}

// ------------------------------------------------------------------------------------------
// The table

void PrintHeader() {
  std::printf("\n%-10s %-9s %-26s %12s %10s %8s %10s %9s %8s\n", "kernel",
              "dtype", "case", "elements", "max err", "check", "time us",
              "GB/s", "vs copy");
  std::printf("%s\n", std::string(110, '-').c_str());
}

// One row. `err` is the largest error / bound over all buffers; `bytes` and
// `ms` are 0 when the case was not timed; `target` is the ratio to the copy
// the case must reach (0: none).
void PrintRow(const char* kernel, const char* dtype, const std::string& label,
              int64_t elements, double err, bool ok, double ms, int64_t bytes,
              double target) {
  char timing[64] = "";
  if (ms > 0) {
    const double gbs = bytes / (ms * 1e-3) / 1e9;
    const double ratio = gbs / g_copy_gbs;
    const bool below = target > 0 && ratio < target;
    if (below) ++g_target_misses;
    std::snprintf(timing, sizeof(timing), "%10.1f %9.1f %7.1f%%%s", ms * 1e3,
                  gbs, 100.0 * ratio,
                  below ? " BELOW TARGET" : (target > 0 ? " ok" : ""));
  }
  std::printf("%-10s %-9s %-26s %12lld %10.3g %8s %s\n", kernel, dtype,
              label.c_str(), static_cast<long long>(elements), err,
              ok ? "pass" : "FAIL", timing);
  std::fflush(stdout);
}

// Bytes an update moves: `accesses` full-size buffers of T per element (the
// kernel headers count them).
template <typename T>
int64_t TrafficBytes(int64_t elements, int accesses) {
  return elements * static_cast<int64_t>(sizeof(T)) * accesses;
}

// Records a comparison of one buffer: fails loudly with the worst element.
bool Record(const char* what, const std::string& label, const char* buffer,
            const Comparison& c, double* worst) {
  *worst = std::max(*worst, c.non_finite > 0 ? INFINITY : c.worst);
  if (c.ok()) return true;
  Fail(
      "%s %s: %s: %lld elements beyond the bound, %lld non-finite (worst index "
      "%lld, "
      "err/bound %.3g)",
      what, label.c_str(), buffer, static_cast<long long>(c.bad),
      static_cast<long long>(c.non_finite),
      static_cast<long long>(c.worst_index), c.worst);
  return false;
}

template <typename T>
bool CheckGuards(const char* what, const std::string& label, const char* buffer,
                 const DeviceArray<T>& a) {
  if (a.GuardsIntact()) return true;
  Fail("%s %s: %s: a kernel wrote outside the buffer (guard bytes changed)",
       what, label.c_str(), buffer);
  return false;
}

// ------------------------------------------------------------------------------------------
// The tensor-list algorithms (AdamW, LAMB, Lion): one runner, RunTensorList,
// and per algorithm a CheckSpec: its name, parameters, random state, float64
// reference and memory traffic.

// A set of tensors laid out like TF's allocations (each 256-byte aligned) in
// arenas, with host copies of their inputs.
template <typename T>
struct TensorSet {
  std::vector<int64_t> sizes, offsets;
  int64_t total = 0;
  explicit TensorSet(const std::vector<int64_t>& s) : sizes(s) {
    const int64_t align = 256 / sizeof(T);
    for (int64_t n : sizes) {
      offsets.push_back(total);
      total += (n + align - 1) / align * align;
    }
  }
};

template <typename T>
void RandomAdamWState(int64_t n, uint64_t seed, std::vector<T>* w,
                      std::vector<T>* m, std::vector<T>* v,
                      std::vector<T>* vhat, std::vector<T>* g) {
  Fill(w, n, seed, 1, -1.0, 1.0);
  Fill(m, n, seed, 2, -0.1, 0.1);
  Fill(v, n, seed, 3, 0.0, 0.01);
  Fill(vhat, n, seed, 4, 0.005, 0.02);
  Fill(g, n, seed, 5, -0.5, 0.5);
}

AdamWParams RandomAdamWParams(uint64_t seed) {
  return AdamWParams{
      0.05, 0.9, 0.999,
      1e-7, 0.1, 1 + static_cast<int64_t>(Uniform(seed, 99, 0, 0, 50))};
}

// Lion's update is sign(c): inputs are drawn with |c| well away from 0,
// where the float rounding of c could flip the sign, except for a few exact
// zeros (m = g = 0: sign 0).

template <typename T>
void RandomLionState(int64_t n, uint64_t seed, const LionParams& p,
                     std::vector<T>* w, std::vector<T>* m, std::vector<T>* g) {
  Fill(w, n, seed, 1, -1.0, 1.0);
  Fill(m, n, seed, 2, -0.1, 0.1);
  Fill(g, n, seed, 5, -0.5, 0.5);
  for (int64_t i = 0; i < n; ++i) {
    if (i % 1009 == 0) {
      (*m)[i] = static_cast<T>(0.0);
      (*g)[i] = static_cast<T>(0.0);
      continue;
    }
    const double mi = static_cast<double>((*m)[i]),
                 gi = static_cast<double>((*g)[i]);
    const double c = p.beta_1 * mi + (1.0 - p.beta_1) * gi;
    if (std::fabs(c) < 1e-3)
      (*g)[i] = static_cast<T>(gi + (gi >= 0 ? 0.05 : -0.05));
  }
}

template <typename Algorithm>
struct CheckSpec;

template <>
struct CheckSpec<AdamW> {
  static constexpr const char* kName = "AdamW";
  static constexpr const char* kSeedPrefix = "";
  using Params = AdamWParams;
  static Params RandomParams(uint64_t seed) { return RandomAdamWParams(seed); }
  static std::vector<double> Scalars(const Params& p) {
    return {p.lr, p.beta_1, p.beta_2, p.epsilon, p.weight_decay};
  }
  static int64_t Step(const Params& p) { return p.step; }
  template <typename T>
  static void RandomState(int64_t n, uint64_t seed, const Params&,
                          std::vector<T>* b) {
    RandomAdamWState(n, seed, &b[AdamW::kVar], &b[AdamW::kM], &b[AdamW::kV],
                     &b[AdamW::kVhat], &b[AdamW::kGrad]);
  }
  static void Reference(const Params& p, bool on, int64_t n, double* const* b) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      AdamWReference(p, on, b[AdamW::kGrad][i], &b[AdamW::kVar][i],
                     &b[AdamW::kM][i], &b[AdamW::kV][i],
                     b[AdamW::kVhat] ? &b[AdamW::kVhat][i] : nullptr);
    }
  }
  static int Accesses(bool amsgrad) {
    return gpu::kAdamWAccesses + (amsgrad ? gpu::kAmsgradAccesses : 0);
  }
};

template <>
struct CheckSpec<Lamb> {
  static constexpr const char* kName = "LAMB";
  static constexpr const char* kSeedPrefix = "lamb";
  using Params = LambParams;
  static Params RandomParams(uint64_t seed) {
    return LambParams{
        0.05, 0.9,  0.999,
        1e-6, 0.01, 1 + static_cast<int64_t>(Uniform(seed, 99, 0, 0, 50))};
  }
  static std::vector<double> Scalars(const Params& p) {
    return {p.lr, p.beta_1, p.beta_2, p.epsilon, p.weight_decay_rate};
  }
  static int64_t Step(const Params& p) { return p.step; }
  template <typename T>
  static void RandomState(int64_t n, uint64_t seed, const Params&,
                          std::vector<T>* b) {
    std::vector<T> unused;
    RandomAdamWState(n, seed, &b[Lamb::kVar], &b[Lamb::kM], &b[Lamb::kV],
                     &unused, &b[Lamb::kGrad]);
  }
  // The whole tensor: its trust ratio is over the tensor.
  static void Reference(const Params& p, bool on, int64_t n, double* const* b) {
    LambReference(p, on, on, n, b[Lamb::kGrad], b[Lamb::kVar], b[Lamb::kM],
                  b[Lamb::kV]);
  }
  static int Accesses(bool) { return gpu::kLambAccesses; }
};

template <>
struct CheckSpec<Lion> {
  static constexpr const char* kName = "Lion";
  static constexpr const char* kSeedPrefix = "lion";
  using Params = LionParams;
  static Params RandomParams(uint64_t) { return {0.05, 0.9, 0.99, 0.1}; }
  static std::vector<double> Scalars(const Params& p) {
    return {p.lr, p.beta_1, p.beta_2, p.weight_decay};
  }
  static int64_t Step(const Params&) { return 0; }  // Lion has none
  template <typename T>
  static void RandomState(int64_t n, uint64_t seed, const Params& p,
                          std::vector<T>* b) {
    RandomLionState(n, seed, p, &b[Lion::kVar], &b[Lion::kM], &b[Lion::kGrad]);
  }
  static void Reference(const Params& p, bool on, int64_t n, double* const* b) {
    for (int64_t i = 0; i < n; ++i) {
      LionReference(p, on, b[Lion::kGrad][i], &b[Lion::kVar][i],
                    &b[Lion::kM][i]);
    }
  }
  static int Accesses(bool) { return gpu::kLionAccesses; }
};

// Runs Algorithm over `sizes` (one launch when they fit a list: multi-tensor
// when kCapacity > 1), with its optional slot (AdamW's vhat: amsgrad) when
// `optional_slot`, checks every element of every buffer it updates and the
// guards of all, times it when `timed`.
template <typename Algorithm, typename T, int kCapacity>
void RunTensorList(const std::string& label, const std::vector<int64_t>& sizes,
                   bool optional_slot, bool misalign, bool timed,
                   double target) {
  using Spec = CheckSpec<Algorithm>;
  using C = typename TypeInfo<T>::C;
  constexpr int kDepth = kNumBuffers<Algorithm>;
  const uint64_t seed = SplitMix(
      g_options.seed ^ std::hash<std::string>()(Spec::kSeedPrefix + label +
                                                TypeInfo<T>::Name()));
  TensorSet<T> set(sizes);
  const typename Spec::Params p = Spec::RandomParams(seed);
  std::vector<T> host[kDepth];
  Spec::RandomState(set.total, seed, p, host);
  // The buffers in op order: var, the slots, grad.
  const char* names[kDepth];
  bool present[kDepth];
  for (int k = 0; k < kDepth; ++k) {
    const bool is_slot = k > 0 && k < kDepth - 1;
    const Slot* slot = is_slot ? &Algorithm::kSlots[k - 1] : nullptr;
    names[k] = is_slot ? slot->name : (k == 0 ? "var" : "grad");
    present[k] = !is_slot || slot->count_attr == nullptr || optional_slot;
  }
  DeviceArray<T> dev[kDepth];
  for (int k = 0; k < kDepth; ++k) {
    if (!present[k]) continue;
    dev[k].Allocate(set.total, misalign);
    dev[k].Upload(host[k]);
  }
  std::vector<C> values;
  for (double value : Spec::Scalars(p)) values.push_back(C(value));
  DeviceScalars<C> scalars(values, Spec::Step(p));
  // Points the scalar inputs, in op order, at the device scalars.
  typename Algorithm::template Hyperparams<C> hyper{};
  int next_value = 0;
  hyper.ForEachScalar([&](const char*, auto* field) {
    if constexpr (std::is_same_v<decltype(field), const int64_t**>) {
      *field = scalars.step;
    } else {
      *field = scalars.values + next_value++;
    }
  });
  constexpr uint8_t kAllFlags =
      (1 << std::size(Algorithm::kPerTensorFlags)) - 1;
  std::vector<gpu::TensorDescOf<Algorithm, T>> descs(sizes.size());
  int64_t elements = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const int64_t o = set.offsets[i];
    for (int k = 0; k < kDepth; ++k) {
      descs[i].ptrs[k] = present[k] ? dev[k].data + o : nullptr;
    }
    descs[i].size = sizes[i];
    // Weight decay (and LAMB's adaptation) off for a third of the tensors
    // (biases, norms), as exclusion lists do.
    descs[i].flags = sizes.size() == 1 || i % 3 != 2 ? kAllFlags : 0;
    elements += sizes[i];
  }
  const int n = static_cast<int>(descs.size());
  Scratch scratch(gpu::UpdateScratchBytes(hyper, descs.data(), n));
  scratch.Poison();
  auto* args = new gpu::TensorListArgsOf<Algorithm, T, kCapacity>;
  auto launch = [&] {
    return gpu::LaunchUpdate<T, C, kCapacity>(g_stream, hyper, descs.data(), n,
                                              scratch.ptr, args);
  };
  CUDA_OK(launch());
  CUDA_OK(cudaStreamSynchronize(g_stream));

  std::vector<double> ref[kDepth];
  for (int k = 0; k < kDepth; ++k) ref[k] = Widen(host[k]);
  for (size_t t = 0; t < sizes.size(); ++t) {
    const int64_t o = set.offsets[t];
    double* buffers[kDepth];
    for (int k = 0; k < kDepth; ++k) {
      buffers[k] = present[k] ? ref[k].data() + o : nullptr;
    }
    Spec::Reference(p, descs[t].flags & kApplyWeightDecay, sizes[t], buffers);
  }
  const double rtol = TypeInfo<T>::kRtol;
  double worst = 0.0;
  bool ok = true;
  for (int k = 0; k < kDepth - 1; ++k) {  // every buffer but grad
    if (!present[k]) continue;
    ok &= Record(Spec::kName, label, names[k],
                 Compare(dev[k].Download(), ref[k], rtol), &worst);
  }
  for (int k = 0; k < kDepth; ++k) {
    if (present[k]) ok &= CheckGuards(Spec::kName, label, names[k], dev[k]);
  }
  double ms = 0;
  if (timed) ms = MedianMs(launch, g_options.repeats);
  PrintRow(Spec::kName, TypeInfo<T>::Name(), label, elements, worst, ok, ms,
           TrafficBytes<T>(elements, Spec::Accesses(optional_slot)), target);
  delete args;
}

// The single-tensor cases of Algorithm, with its optional slot (amsgrad)
// where it has one.
template <typename Algorithm, typename T>
void RunSingleTensorCases(int64_t big) {
  const char* optional = nullptr;  // the optional slot's feature
  for (const Slot& slot : Algorithm::kSlots) {
    if (slot.count_attr != nullptr) optional = slot.feature;
  }
  for (int64_t n :
       {int64_t{1}, int64_t{7}, int64_t{4099}, (int64_t{1} << 20) + 3}) {
    RunTensorList<Algorithm, T, 1>("n=" + std::to_string(n), {n}, false, false,
                                   false, 0);
  }
  if (optional != nullptr) {
    RunTensorList<Algorithm, T, 1>(std::string(optional) + " n=1048579",
                                   {(int64_t{1} << 20) + 3}, true, false, false,
                                   0);
  }
  RunTensorList<Algorithm, T, 1>("misaligned n=4099", {4099}, false, true,
                                 false, 0);
  RunTensorList<Algorithm, T, 1>("single", {big}, false, false, true, 0.85);
  if (optional != nullptr) {
    RunTensorList<Algorithm, T, 1>("single " + std::string(optional), {big},
                                   true, false, true, 0.85);
  }
}

// ------------------------------------------------------------------------------------------
// Adafactor: factored when cols > 0 ([batch, rows, cols]), else unfactored
// over `rows` elements. `zero_row_col` zeroes gradient row 0 and column 0 of
// every matrix (a dead unit and a constant feature: Keras defect 9).

template <typename T>
void RunAdafactor(const std::string& label, int64_t batch, int64_t rows,
                  int64_t cols, bool zero_row_col, bool timed, double target) {
  using C = typename TypeInfo<T>::C;
  const uint64_t seed =
      SplitMix(g_options.seed ^ std::hash<std::string>()("adafactor" + label +
                                                         TypeInfo<T>::Name()));
  const bool factored = cols > 0;
  const int64_t n = factored ? batch * rows * cols : rows;
  const int64_t n_row = factored ? batch * rows : n,
                n_col = factored ? batch * cols : 0;
  std::vector<T> w, g, r, c;
  Fill(&w, n, seed, 1, -1.0, 1.0);
  Fill(&g, n, seed, 5, -0.5, 0.5);
  Fill(&r, n_row, seed, 6, 0.01, 0.1);
  Fill(&c, n_col, seed, 7, 0.01, 0.1);
  if (zero_row_col && factored) {
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t j = 0; j < cols; ++j)
        g[b * rows * cols + j] = FromDouble<T>(0.0);
      for (int64_t i = 0; i < rows; ++i)
        g[b * rows * cols + i * cols] = FromDouble<T>(0.0);
    }
  }
  DeviceArray<T> dw, dg, dr, dc;
  dw.Allocate(n, false);
  dg.Allocate(n, false);
  dr.Allocate(n_row, false);
  if (factored) dc.Allocate(n_col, false);
  dw.Upload(w);
  dg.Upload(g);
  dr.Upload(r);
  if (factored) dc.Upload(c);
  const AdafactorParams p{
      0.05, -0.8, 1e-30,
      1e-3, 1.0,  1 + static_cast<int64_t>(Uniform(seed, 99, 0, 0, 50)),
      true};
  DeviceScalars<C> scalars({C(p.lr), C(p.beta_2_decay), C(p.epsilon_1),
                            C(p.epsilon_2), C(p.clip_threshold)},
                           p.step);
  const functor::AdafactorHyperparams<C> hyper{
      scalars.values,     scalars.values + 1, scalars.values + 2,
      scalars.values + 3, scalars.values + 4, scalars.step};
  const functor::FactoredShape shape{batch, rows, cols};
  Scratch scratch(factored ? gpu::AdafactorFactoredScratchBytes<C>(shape)
                           : gpu::AdafactorUnfactoredScratchBytes<C>(n));
  scratch.Poison();
  auto launch = [&] {
    return factored ? gpu::LaunchAdafactorFactored<T, C>(
                          g_stream, g_sm_count, hyper, shape, dw.data, dr.data,
                          dc.data, dg.data, scratch.ptr)
                    : gpu::LaunchAdafactorUnfactored<T, C>(
                          g_stream, hyper, n, dw.data, dr.data, dg.data,
                          scratch.ptr);
  };
  CUDA_OK(launch());
  CUDA_OK(cudaStreamSynchronize(g_stream));

  std::vector<double> rw = Widen(w), rr = Widen(r), rc = Widen(c);
  const std::vector<double> rg = Widen(g);
  AdafactorReference(p, batch, rows, cols, rg.data(), rw.data(), rr.data(),
                     rc.data());
  const double rtol = TypeInfo<T>::kRtol;
  double worst = 0.0;
  bool ok = Record("Adafactor", label, "var", Compare(dw.Download(), rw, rtol),
                   &worst);
  ok &= Record("Adafactor", label, factored ? "row acc" : "acc",
               Compare(dr.Download(), rr, rtol), &worst);
  if (factored)
    ok &= Record("Adafactor", label, "col acc",
                 Compare(dc.Download(), rc, rtol), &worst);
  ok &= CheckGuards("Adafactor", label, "var", dw) &&
        CheckGuards("Adafactor", label, "grad", dg) &&
        CheckGuards("Adafactor", label, "acc", dr) &&
        (!factored || CheckGuards("Adafactor", label, "col acc", dc));
  double ms = 0;
  if (timed) ms = MedianMs(launch, g_options.repeats);
  PrintRow("Adafactor", TypeInfo<T>::Name(), label, n, worst, ok, ms,
           TrafficBytes<T>(n, factored ? gpu::kAdafactorFactoredAccesses
                                       : gpu::kAdafactorUnfactoredAccesses),
           target);
}

// ------------------------------------------------------------------------------------------
// BERT-base (tf_opt_plugin/benchmark/bert_base_shapes.py): 199 tensors,
// 109,482,240 elements.

std::vector<std::vector<int64_t>> BertBaseShapes() {
  const int64_t h = 768, inter = 3072;
  std::vector<std::vector<int64_t>> s = {
      {30522, h}, {512, h}, {2, h}, {h}, {h}};
  for (int layer = 0; layer < 12; ++layer) {
    for (int proj = 0; proj < 4; ++proj) {
      s.push_back({h, h});
      s.push_back({h});
    }
    s.push_back({h});
    s.push_back({h});
    s.push_back({h, inter});
    s.push_back({inter});
    s.push_back({inter, h});
    s.push_back({h});
    s.push_back({h});
    s.push_back({h});
  }
  s.push_back({h, h});
  s.push_back({h});
  return s;
}

std::vector<int64_t> BertBaseSizes() {
  std::vector<int64_t> sizes;
  for (const auto& shape : BertBaseShapes()) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    sizes.push_back(n);
  }
  return sizes;
}

// ------------------------------------------------------------------------------------------
// The GPU run

template <typename T>
void RunAllForType() {
  const int64_t big = g_options.elements;
  RunSingleTensorCases<AdamW, T>(big);
  RunSingleTensorCases<Lamb, T>(big);
  RunSingleTensorCases<Lion, T>(big);

  RunAdafactor<T>("[1,1,1]", 1, 1, 1, false, false, 0);
  RunAdafactor<T>("[3,37,129]", 3, 37, 129, false, false, 0);
  RunAdafactor<T>("[1000,3]", 1, 1000, 3, false, false, 0);
  RunAdafactor<T>("[2,130,1023] zero row+col", 2, 130, 1023, true, false, 0);
  RunAdafactor<T>("[4099] unfactored", 1, 4099, 0, false, false, 0);
  int64_t side = 1;
  while (side * side < big) side *= 2;
  RunAdafactor<T>("[" + std::to_string(side) + "," + std::to_string(side) + "]",
                  1, side, side, false, true, 0.85);
  RunAdafactor<T>("unfactored", 1, big, 0, false, true, 0.85);

  if (g_options.bert) {
    const std::vector<int64_t> bert = BertBaseSizes();
    constexpr int kList = gpu::kMultiTensorCapacity;
    const std::string multi = "BERT-base multi-tensor",
                      per_tensor = "BERT-base per-tensor";
    RunTensorList<AdamW, T, kList>(multi, bert, false, false, true, 0.75);
    RunTensorList<AdamW, T, 1>(per_tensor, bert, false, false, true, 0);
    RunTensorList<Lamb, T, kList>(multi, bert, false, false, true, 0.75);
    RunTensorList<Lamb, T, 1>(per_tensor, bert, false, false, true, 0);
    RunTensorList<Lion, T, kList>(multi, bert, false, false, true, 0.75);
  }
}

int RunGpu() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    std::printf(
        "gpu_check: no usable CUDA GPU: %s. Nothing was run on a GPU.\n",
        e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount() = 0");
    if (e == cudaErrorInsufficientDriver) {
      std::printf(
          "gpu_check: either there is no NVIDIA driver, or it is older than "
          "the CUDA "
          "runtime of this nvcc (nvcc 13 needs driver >= 580).\n");
    }
    std::printf("gpu_check: `--self-test` runs the host-only checks.\n");
    return 2;
  }
  cudaDeviceProp prop;
  CUDA_OK(cudaGetDeviceProperties(&prop, 0));
  int driver = 0, runtime = 0;
  CUDA_OK(cudaDriverGetVersion(&driver));
  CUDA_OK(cudaRuntimeGetVersion(&runtime));
  g_sm_count = prop.multiProcessorCount;
  CUDA_OK(cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking));
  std::printf(
      "device: %s (sm_%d%d, %d SMs, %.1f GiB, L2 %.0f MiB), driver CUDA %d.%d, "
      "runtime %d.%d\n",
      prop.name, prop.major, prop.minor, prop.multiProcessorCount,
      prop.totalGlobalMem / 1073741824.0, prop.l2CacheSize / 1048576.0,
      driver / 1000, (driver % 1000) / 10, runtime / 1000,
      (runtime % 1000) / 10);
  std::printf(
      "seed: %llu (rerun with --seed %llu), %d timed runs per case (median), "
      "3 warm-up\n",
      static_cast<unsigned long long>(g_options.seed),
      static_cast<unsigned long long>(g_options.seed), g_options.repeats);
  const int64_t copy_bytes =
      std::max<int64_t>(g_options.elements * 4, int64_t{256} << 20);
  g_copy_gbs = CopyGbs(copy_bytes);
  std::printf(
      "device-to-device copy (cudaMemcpyAsync, %lld MiB): %.1f GB/s (read + "
      "write)\n",
      static_cast<long long>(copy_bytes >> 20), g_copy_gbs);
  std::printf(
      "GB/s = bytes the kernel moves (every pass, see k*Accesses in the kernel "
      "headers) / "
      "median time.\nTargets: single-tensor >= 85%% of copy at %lld elements, "
      "BERT-base "
      "multi-tensor >= 75%%.\n",
      static_cast<long long>(g_options.elements));
  PrintHeader();
  RunAllForType<float>();
  RunAllForType<__half>();
  RunAllForType<__nv_bfloat16>();
  RunAllForType<double>();
  std::printf("\n%d mismatch(es), %d bandwidth target(s) missed.\n", g_failures,
              g_target_misses);
  if (g_failures > 0) {
    std::printf(
        "gpu_check: FAILED (results differ from the float64 reference).\n");
    return 1;
  }
  if (g_target_misses > 0 && g_options.require_targets) {
    std::printf(
        "gpu_check: FAILED (--require-targets: bandwidth targets missed).\n");
    return 1;
  }
  std::printf("gpu_check: all results match the float64 reference.\n");
  return 0;
}

// ------------------------------------------------------------------------------------------
// Host self-test (no GPU)

// A failed host check: "FAIL: self-test: <message>".
template <typename... Args>
void Expect(bool condition, const char* fmt, Args... args) {
  if (condition) return;
  const std::string message = std::string("self-test: ") + fmt;
  Fail(message.c_str(), args...);
}

bool Near(double got, double want, double rtol, double atol) {
  return std::isfinite(got) &&
         std::fabs(got - want) <= atol + rtol * std::fabs(want);
}

// Keras 3's golden trajectories (keras/src/optimizers/*_test.py, also in
// tests/keras_goldens.py): x = ones(10), one step with gradients 0.01, then
// steps with gradients arange(0.1, 1.1, 0.1); rtol = atol = 5e-4.
void SelfTestGoldens() {
  const double adamw_golden[5][10] = {
      {0.4998, 0.4998, 0.4998, 0.4998, 0.4998, 0.4998, 0.4998, 0.4998, 0.4998,
       0.4998},
      {0.2486, 0.2475, 0.2463, 0.2451, 0.244, 0.2428, 0.2417, 0.2405, 0.2394,
       0.2382},
      {0.1223, 0.1198, 0.1174, 0.1149, 0.1124, 0.11, 0.1075, 0.1051, 0.1027,
       0.1003},
      {0.0586, 0.0549, 0.0512, 0.0475, 0.0439, 0.0402, 0.0366, 0.033, 0.0294,
       0.0258},
      {0.0263, 0.0215, 0.0167, 0.012, 0.0073, 0.0026, -0.0021, -0.0067, -0.0113,
       -0.0159}};
  const double lamb_golden[5] = {0.999, 0.9982, 0.9974, 0.9965, 0.9955};
  const double adafactor_golden[5][10] = {
      {0.55, 0.55, 0.55, 0.55, 0.55, 0.55, 0.55, 0.55, 0.55, 0.55},
      {0.3031, 0.3026, 0.3025, 0.3024, 0.3024, 0.3024, 0.3024, 0.3024, 0.3024,
       0.3024},
      {0.1671, 0.1665, 0.1663, 0.1663, 0.1663, 0.1663, 0.1663, 0.1663, 0.1663,
       0.1663},
      {0.0923, 0.0916, 0.0915, 0.0914, 0.0914, 0.0914, 0.0914, 0.0914, 0.0914,
       0.0914},
      {0.0554, 0.0548, 0.0546, 0.0546, 0.0546, 0.0546, 0.0546, 0.0545, 0.0545,
       0.0545}};
  auto grads = [](int step, int i) {
    return step == 1 ? 0.01 : (i + 1) / 10.0;
  };

  double w[10], m[10] = {}, v[10] = {}, r[10] = {};
  std::fill(w, w + 10, 1.0);
  for (int step = 1; step <= 5; ++step) {
    const AdamWParams p{1.0, 0.9, 0.999, 2.0, 0.5, step};
    for (int i = 0; i < 10; ++i)
      AdamWReference(p, true, grads(step, i), &w[i], &m[i], &v[i], nullptr);
    for (int i = 0; i < 10; ++i) {
      Expect(
          Near(w[i], adamw_golden[step - 1][i], 5e-4, 5e-4),
          "AdamW reference vs Keras golden, step %d element %d: %.6f vs %.4f",
          step, i, w[i], adamw_golden[step - 1][i]);
    }
  }
  std::fill(w, w + 10, 1.0);
  std::fill(m, m + 10, 0.0);
  std::fill(v, v + 10, 0.0);
  for (int step = 1; step <= 5; ++step) {
    const LambParams p{0.001, 0.9, 0.999, 1e-6, 0.0, step};
    double g[10];
    for (int i = 0; i < 10; ++i) g[i] = grads(step, i);
    LambReference(p, true, true, 10, g, w, m, v);
    for (int i = 0; i < 10; ++i) {
      Expect(Near(w[i], lamb_golden[step - 1], 5e-4, 5e-4),
             "LAMB reference vs Keras golden, step %d element %d: %.6f vs %.4f",
             step, i, w[i], lamb_golden[step - 1]);
    }
  }
  std::fill(w, w + 10, 1.0);
  for (int step = 1; step <= 5; ++step) {
    const AdafactorParams p{0.5, -0.65, 1e-15, 1e-4, 0.9, step, true};
    double g[10];
    for (int i = 0; i < 10; ++i) g[i] = grads(step, i);
    AdafactorReference(p, 1, 10, 0, g, w, r, nullptr);
    for (int i = 0; i < 10; ++i) {
      Expect(Near(w[i], adafactor_golden[step - 1][i], 5e-4, 5e-4),
             "Adafactor reference vs Keras golden, step %d element %d: %.6f vs "
             "%.4f",
             step, i, w[i], adafactor_golden[step - 1][i]);
    }
  }
  // Lion: keras/src/optimizers/lion_test.py, lr 0.001 by default, w = 1 - 0.001
  // * step.
  std::fill(w, w + 10, 1.0);
  std::fill(m, m + 10, 0.0);
  for (int step = 1; step <= 5; ++step) {
    for (int i = 0; i < 10; ++i) {
      LionReference(LionParams{0.001, 0.9, 0.99, 0.0}, false, grads(step, i),
                    &w[i], &m[i]);
      Expect(Near(w[i], 1.0 - 0.001 * step, 5e-4, 5e-4),
             "Lion reference vs Keras golden, step %d element %d: %.6f", step,
             i, w[i]);
    }
  }
  // The op docstrings' examples (tf_opt_plugin/ops/*.py), exact to 4 places.
  {
    double w2[2] = {3.0, 4.0}, m2[2] = {}, v2[2] = {}, g2[2] = {1.0, 1.0};
    LambReference(LambParams{0.1, 0.9, 0.999, 0.0, 0.0, 1}, true, true, 2, g2,
                  w2, m2, v2);
    Expect(Near(w2[0], 2.6464, 0, 5e-5) && Near(w2[1], 3.6464, 0, 5e-5),
           "LAMB reference vs docstring: %.5f %.5f", w2[0], w2[1]);
    double wa[4] = {1, 2, 3, 4}, ra[2] = {}, ca[2] = {}, ga[4] = {1, 1, 1, 1};
    AdafactorReference(AdafactorParams{0.01, -0.8, 1e-30, 1e-3, 1.0, 1, true},
                       1, 2, 2, ga, wa, ra, ca);
    const double want[4] = {0.9726, 1.9726, 2.9726, 3.9726};
    for (int i = 0; i < 4; ++i) {
      Expect(Near(wa[i], want[i], 0, 5e-5),
             "Adafactor reference vs docstring [%d]: %.5f", i, wa[i]);
    }
  }
}

// The reference against a second formulation: the shared per-element math of
// cc/kernels/math (what the kernels run), on the host in double, in the
// kernels' arrangement (AdamWUpdateAt; LAMB's two passes; Adafactor's
// separate row and column scales and sum(u^2) from column sums).
void SelfTestSecondFormulation() {
  const uint64_t seed = 12345;
  const int64_t rows = 37, cols = 53, n = rows * cols;
  std::vector<double> w, m, v, vhat, g, r, c;
  RandomAdamWState(n, seed, &w, &m, &v, &vhat, &g);
  Fill(&r, rows, seed, 6, 0.01, 0.1);
  Fill(&c, cols, seed, 7, 0.01, 0.1);
  double worst = 0;
  {  // AdamW, amsgrad
    const AdamWParams p = RandomAdamWParams(seed);
    std::vector<double> w1 = w, m1 = m, v1 = v, h1 = vhat, w2 = w, m2 = m,
                        v2 = v, h2 = vhat;
    const math::AdamWStep<double> s = math::MakeAdamWStep<double>(
        p.lr, p.beta_1, p.beta_2, p.epsilon, p.weight_decay, p.step);
    for (int64_t i = 0; i < n; ++i) {
      AdamWReference(p, true, g[i], &w1[i], &m1[i], &v1[i], &h1[i]);
      math::AdamWUpdateAt<double, double, true>(s, i, w2.data(), m2.data(),
                                                v2.data(), h2.data(), g.data());
    }
    const Comparison cw = CompareDoubles(w2.data(), w1.data(), n, 1e-12);
    const Comparison ch = CompareDoubles(h2.data(), h1.data(), n, 1e-12);
    Expect(cw.ok() && ch.ok(), "AdamW: math header vs reference (worst %.3g)",
           cw.worst);
    worst = std::max(worst, cw.worst);
  }
  {  // LAMB
    const LambParams p{0.05, 0.9, 0.999, 1e-6, 0.01, 7};
    std::vector<double> w1 = w, m1 = m, v1 = v, w2 = w, m2 = m, v2 = v;
    LambReference(p, true, true, n, g.data(), w1.data(), m1.data(), v1.data());
    const math::LambStep<double> s = math::MakeLambStep<double>(
        p.beta_1, p.beta_2, p.epsilon, p.weight_decay_rate, p.step);
    double w_squares = 0, u_squares = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double u =
          math::LambMomentsAndDirection<double>(s, g[i], w2[i], m2[i], v2[i]);
      w_squares += w2[i] * w2[i];
      u_squares += u * u;
    }
    const double step_size =
        p.lr * math::LambTrustRatio<double>(w_squares, u_squares, true);
    for (int64_t i = 0; i < n; ++i)
      w2[i] -= step_size * math::LambDirection<double>(s, w2[i], m2[i], v2[i]);
    const Comparison cw = CompareDoubles(w2.data(), w1.data(), n, 1e-12);
    Expect(cw.ok(), "LAMB: math header vs reference (worst %.3g)", cw.worst);
    worst = std::max(worst, cw.worst);
  }
  {  // Adafactor, factored, the kernels' arrangement
    const AdafactorParams p{0.05, -0.8, 1e-30, 1e-3, 1.0, 3, true};
    std::vector<double> w1 = w, r1 = r, c1 = c, w2 = w, r2 = r, c2 = c;
    AdafactorReference(p, 1, rows, cols, g.data(), w1.data(), r1.data(),
                       c1.data());
    const math::AdafactorStep<double> s = math::MakeAdafactorStep<double>(
        p.lr, p.beta_2_decay, p.epsilon_1, p.step, p.relative_step);
    std::vector<double> inv_root(rows), col_sums(cols, 0), col_u(cols, 0),
        col_scale(cols);
    double w_squares = 0, r_sum = 0;
    for (int64_t i = 0; i < rows; ++i) {
      double sum = 0;
      for (int64_t j = 0; j < cols; ++j) {
        const double sq =
            math::AdafactorRegularizedSquare<double>(s, g[i * cols + j]);
        sum += sq;
        col_sums[j] += sq;
        w_squares += w2[i * cols + j] * w2[i * cols + j];
      }
      r2[i] = math::AdafactorAccumulate<double>(s, r2[i], sum / cols);
      r_sum += r2[i];
      inv_root[i] = math::AdafactorInverseRoot<double>(s, r2[i]);
      for (int64_t j = 0; j < cols; ++j) {
        col_u[j] += math::AdafactorRowScaledSquare<double>(g[i * cols + j],
                                                           inv_root[i]);
      }
    }
    const double sqrt_mean_r =
        math::AdafactorSqrtMeanRow<double>(s, r_sum / rows);
    double u_squares = 0;
    for (int64_t j = 0; j < cols; ++j) {
      c2[j] = math::AdafactorAccumulate<double>(s, c2[j], col_sums[j] / rows);
      col_scale[j] = math::AdafactorInverseRoot<double>(s, c2[j]);
      u_squares += math::AdafactorColumnSumSquaresOfU<double>(
          col_u[j], col_scale[j], sqrt_mean_r);
    }
    const double step_size = math::AdafactorStepSize<double>(
        s, p.epsilon_2, p.clip_threshold, w_squares, u_squares, n);
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t j = 0; j < cols; ++j) {
        w2[i * cols + j] -=
            step_size *
            math::AdafactorDirection<double>(
                g[i * cols + j], inv_root[i] * sqrt_mean_r, col_scale[j]);
      }
    }
    const Comparison cw = CompareDoubles(w2.data(), w1.data(), n, 1e-12);
    const Comparison cr = CompareDoubles(r2.data(), r1.data(), rows, 1e-12);
    const Comparison cc = CompareDoubles(c2.data(), c1.data(), cols, 1e-12);
    Expect(cw.ok() && cr.ok() && cc.ok(),
           "Adafactor: math header (split scales, sum(u^2) from column sums) "
           "vs reference "
           "(product form) (worst %.3g)",
           cw.worst);
    worst = std::max(worst, cw.worst);
  }
  {  // Lion
    const LionParams p{0.05, 0.9, 0.99, 0.1};
    std::vector<double> w1 = w, m1 = m, w2 = w, m2 = m;
    const math::LionStep<double> s =
        math::MakeLionStep<double>(p.lr, p.beta_1, p.beta_2, p.weight_decay);
    for (int64_t i = 0; i < n; ++i) {
      LionReference(p, true, g[i], &w1[i], &m1[i]);
      math::LionUpdateAt<double, double>(s, i, w2.data(), m2.data(), g.data());
    }
    const Comparison cw = CompareDoubles(w2.data(), w1.data(), n, 1e-12);
    const Comparison cm = CompareDoubles(m2.data(), m1.data(), n, 1e-12);
    Expect(cw.ok() && cm.ok(), "Lion: math header vs reference (worst %.3g)",
           cw.worst);
    worst = std::max(worst, cw.worst);
  }
  std::printf(
      "self-test: float64 reference == shared math headers (2nd formulation), "
      "worst err/bound %.3g at rtol 1e-12\n",
      worst);
}

// The comparison catches what it must.
void SelfTestComparison() {
  std::vector<double> ref(1000), got;
  for (int i = 0; i < 1000; ++i) ref[i] = std::sin(i + 1.0);
  got = ref;
  Expect(CompareDoubles(got.data(), ref.data(), 1000, 1e-5).ok(),
         "identical arrays must pass");
  got[517] = ref[517] * (1 + 3e-5);
  Comparison c = CompareDoubles(got.data(), ref.data(), 1000, 1e-5);
  Expect(
      !c.ok() && c.worst_index == 517 && c.bad == 1,
      "an error of 3x the bound at [517] must fail there (bad=%lld, at %lld)",
      static_cast<long long>(c.bad), static_cast<long long>(c.worst_index));
  got = ref;
  got[3] = NAN;
  Expect(!CompareDoubles(got.data(), ref.data(), 1000, 1e-5).ok(),
         "NaN must never pass");
  got = ref;
  got[999] = INFINITY;
  Expect(!CompareDoubles(got.data(), ref.data(), 1000, 1e-5).ok(),
         "Inf must never pass");
  got = ref;
  std::vector<double> ref_nan = ref;
  ref_nan[10] = NAN;
  got[10] = NAN;
  Expect(!CompareDoubles(got.data(), ref_nan.data(), 1000, 1e-5).ok(),
         "NaN must not pass even where the reference is NaN");
  // Poisoned scratch bytes are NaN in every compute type.
  unsigned char bytes[8];
  std::memset(bytes, 0xFF, sizeof(bytes));
  float f;
  double d;
  std::memcpy(&f, bytes, 4);
  std::memcpy(&d, bytes, 8);
  Expect(std::isnan(f) && std::isnan(d), "0xFF bytes must be NaN");
  // Half types round-trip and the per-dtype bounds exceed their rounding.
  Expect(ToDouble(FromDouble<__half>(0.1)) != 0.1 &&
             std::fabs(ToDouble(FromDouble<__half>(0.1)) - 0.1) / 0.1 <
                 TypeInfo<__half>::kRtol,
         "float16 rounding within its bound");
  Expect(std::fabs(ToDouble(FromDouble<__nv_bfloat16>(0.1)) - 0.1) / 0.1 <
             TypeInfo<__nv_bfloat16>::kRtol,
         "bfloat16 rounding within its bound");
  std::printf(
      "self-test: comparison catches an off-bound element, NaN and Inf\n");
}

// The chunk map: every chunk of every tensor is one block, in one launch for
// BERT-base; a longer list is split; empty tensors get no block.
void SelfTestChunkMap() {
  const std::vector<int64_t> bert = BertBaseSizes();
  int64_t params = 0;
  for (int64_t n : bert) params += n;
  Expect(bert.size() == 199 && params == 109482240,
         "BERT-base set: %zu tensors, %lld elements (want 199, 109482240)",
         bert.size(), static_cast<long long>(params));
  auto check = [](const std::vector<int64_t>& sizes, int want_launches,
                  const char* what) {
    std::vector<gpu::TensorDesc<float, 5>> descs;
    for (int64_t n : sizes)
      descs.push_back({{nullptr, nullptr, nullptr, nullptr, nullptr}, n, 0});
    auto* args = new gpu::TensorListArgs<float, 5, gpu::kMultiTensorCapacity>;
    int launches = 0;
    int64_t next_tensor = 0, chunks_seen = 0;
    bool ok = true;
    gpu::ForEachTensorList(
        descs.data(), static_cast<int>(descs.size()), args,
        [&](const gpu::TensorListArgs<float, 5, gpu::kMultiTensorCapacity>& a,
            int chunks) {
          ++launches;
          ok &= a.first_chunk == chunks_seen;
          // Block b -> (tensor, chunk): every chunk of every tensor once.
          std::vector<int64_t> seen(a.num_tensors, 0);
          for (int b = 0; b < chunks; ++b) {
            const int t = gpu::FindTensor(a, b);
            const int64_t chunk = b - a.chunk_begin[t];
            ok &= t >= 0 && t < a.num_tensors && chunk == seen[t]++ &&
                  chunk * gpu::kChunkElements < a.sizes[t];
          }
          for (int t = 0; t < a.num_tensors; ++t) {
            ok &= seen[t] == gpu::NumChunks(a.sizes[t]);
          }
          ok &= a.first_tensor == next_tensor;
          next_tensor += a.num_tensors;
          chunks_seen += chunks;
          return cudaSuccess;
        });
    Expect(ok && launches == want_launches,
           "chunk map of %s: %d launch(es) (want %d), mapping %s", what,
           launches, want_launches, ok ? "ok" : "WRONG");
    delete args;
  };
  check(bert, 1, "BERT-base");
  check(std::vector<int64_t>(600, 1000), 2, "600 tensors");
  check({0, 5, 0, 0, 65536, 65537, 0, 1}, 1, "tensors with empty ones");
  std::printf("self-test: chunk map (BERT-base: 199 tensors, one launch)\n");
}

// The vector/tail split visits every element exactly once.
void SelfTestPacks() {
  bool ok = true;
  for (int64_t begin : {0, 4, 8}) {
    for (int64_t length : {0, 1, 3, 4, 5, 17, 1000, 1027}) {
      for (int threads : {1, 3, 32}) {
        for (bool vector_ok : {false, true}) {
          std::vector<int> visits(begin + length, 0);
          for (int t = 0; t < threads; ++t) {
            gpu::ForEachPack<float>(begin, begin + length, t, threads,
                                    vector_ok, [&](int64_t i, auto width) {
                                      constexpr int W = decltype(width)::value;
                                      for (int k = 0; k < W; ++k)
                                        ++visits[i + k];
                                    });
          }
          for (int64_t i = 0; i < begin + length; ++i)
            ok &= visits[i] == (i >= begin ? 1 : 0);
        }
      }
    }
  }
  Expect(ok, "ForEachPack must visit every element exactly once");
  std::printf(
      "self-test: 16-byte packs + scalar tail cover every element once\n");
}

int RunSelfTest() {
  std::printf("gpu_check --self-test: host-only checks (no GPU used)\n");
  SelfTestGoldens();
  std::printf(
      "self-test: float64 references reproduce Keras's golden trajectories and "
      "the "
      "docstring examples\n");
  SelfTestSecondFormulation();
  SelfTestComparison();
  SelfTestChunkMap();
  SelfTestPacks();
  if (g_failures > 0) {
    std::printf("gpu_check --self-test: FAILED (%d)\n", g_failures);
    return 1;
  }
  std::printf("gpu_check --self-test: all host checks passed\n");
  return 0;
}

void Usage(FILE* out) {
  std::fprintf(
      out,
      "usage: gpu_check [--self-test] [--elements N] [--seed S] [--repeats R]\n"
      "                 [--no-bert] [--require-targets]\n"
      "  --self-test        host-only checks (reference, comparison, chunk "
      "map); no GPU\n"
      "  --elements N       elements of the timed single-tensor cases (default "
      "2^26)\n"
      "  --seed S           random seed (default: time based, printed)\n"
      "  --repeats R        timed runs per case, median reported (default 30)\n"
      "  --no-bert          skip the BERT-base multi-tensor cases\n"
      "  --require-targets  exit 1 when a bandwidth target is missed\n");
}

}  // namespace

int main(int argc, char** argv) {
  g_options.seed = static_cast<uint64_t>(time(nullptr));
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) {
        Usage(stderr);
        std::exit(3);
      }
      return argv[++i];
    };
    if (a == "--self-test") {
      g_options.self_test = true;
    } else if (a == "--elements") {
      g_options.elements = std::atoll(value());
    } else if (a == "--seed") {
      g_options.seed = std::strtoull(value(), nullptr, 10);
    } else if (a == "--repeats") {
      g_options.repeats = std::max(1, std::atoi(value()));
    } else if (a == "--no-bert") {
      g_options.bert = false;
    } else if (a == "--require-targets") {
      g_options.require_targets = true;
    } else if (a == "--help" || a == "-h") {
      Usage(stdout);
      return 0;
    } else {
      std::fprintf(stderr, "gpu_check: unknown argument %s\n", a.c_str());
      Usage(stderr);
      return 3;
    }
  }
  if (g_options.elements < 1) {
    std::fprintf(stderr, "gpu_check: --elements must be >= 1\n");
    return 3;
  }
  return g_options.self_test ? RunSelfTest() : RunGpu();
}
