// The one kernel of every tensor-list algorithm (tensor_list.h): both ops of
// an algorithm, ResourceApplyX (a list of one variable) and
// ResourceMultiTensorApplyX (N variables with the same hyperparameters), on
// the CPU and, with CUDA, the GPU. It validates and locks the inputs in the
// fixed order (variable_access.h) and hands the list to
// functor::ApplyUpdate<Device, T, C, Algorithm>.
#ifndef TF_OPT_PLUGIN_CC_KERNELS_TENSOR_LIST_OP_H_
#define TF_OPT_PLUGIN_CC_KERNELS_TENSOR_LIST_OP_H_

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <string>
#include <type_traits>
#include <vector>

#include "cc/kernels/cpu_parallel.h"
#include "cc/kernels/math/quantization_math.h"
#include "cc/kernels/registration.h"
#include "cc/kernels/tensor_list.h"
#include "cc/kernels/variable_access.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace tf_opt_plugin {
namespace functor {

// An elementwise algorithm's update of elements [begin, end) of one tensor
// on the CPU, `Run(step, begin, end, var, slots, grad)` for slots stored as
// any S (the variable's T, float, bfloat16), and its kCyclesPerElement for
// TF's cost model: specialized in its <algo>_op.cc.
template <typename T, typename C, typename Algorithm>
struct CpuRange;

// One 8-bit block of `count` elements to float32 and back (math/
// quantization_math.h), compiled per ISA like the update loops.
TFOPT_CPU_CLONES inline void DequantizeBlock(const uint8_t* __restrict codes,
                                             int64_t count, float absmax,
                                             bool is_signed,
                                             float* __restrict values) {
  const float* map = math::GetDynamicMap(is_signed).value;
  for (int64_t j = 0; j < count; ++j) {
    values[j] = math::FlushSubnormal(map[codes[j]] * absmax);
  }
}

TFOPT_CPU_CLONES inline float QuantizeBlock(const float* __restrict values,
                                            int64_t count, bool is_signed,
                                            uint8_t* __restrict codes) {
  const float absmax = math::BlockAbsMax(values, 0, count);
  math::QuantizeBlock(values, count, absmax, is_signed, codes);
  return absmax;
}

// For 8-bit slots (uint8 codes, float32 absmax per block of 256): calls
// body(first, count, state) for each quantization block of [begin, end)
// (begin a multiple of 256) with state[k] the block of slot k dequantized to
// float32 (null for a slot that is off); with `write_back`, then stores the
// updated block: its new absmax and codes. The block stays in L1 cache: the
// update is still one pass over memory.
template <typename Algorithm, typename Body>
void ForEachDequantizedBlock(uint8_t* const* codes, float* const* absmax,
                             int64_t begin, int64_t end, bool write_back,
                             Body body) {
  constexpr int kSlots = kNumSlots<Algorithm>;
  constexpr int64_t kBlock = math::kQuantizationBlockSize;
  float values[kSlots][kBlock];
  float* state[kSlots];
  for (int64_t first = begin; first < end; first += kBlock) {
    const int64_t count = std::min(kBlock, end - first);
    const int64_t block = first / kBlock;
    for (int k = 0; k < kSlots; ++k) {
      state[k] = codes[k] == nullptr ? nullptr : values[k];
      if (state[k] == nullptr) continue;
      DequantizeBlock(codes[k] + first, count, absmax[k][block],
                      !Algorithm::kSlots[k].non_negative, values[k]);
    }
    body(first, count, state);
    if (!write_back) continue;
    for (int k = 0; k < kSlots; ++k) {
      if (state[k] == nullptr) continue;
      absmax[k][block] =
          QuantizeBlock(values[k], count, !Algorithm::kSlots[k].non_negative,
                        codes[k] + first);
    }
  }
}

// The rounding of `t`'s variable: to nearest, or stochastically with its
// key.
template <typename Rounding, typename Tensor>
Rounding MakeRounding(const Tensor& t) {
  if constexpr (std::is_same_v<Rounding, math::RoundStochastically>) {
    return math::RoundStochastically{t.rounding_key};
  } else {
    return Rounding();
  }
}

// Calls range(begin, end, var, slots, grad, rounding) over elements [begin,
// end) of `t`, the slots as stored (S = T, float, bfloat16) or, for 8-bit
// slots, one dequantized block at a time (then `var` and `grad` start at the
// block, the range is [0, count) and `rounding` is offset to it), stored back
// when `write_back`.
template <typename Algorithm, typename Tensor, typename Rounding,
          typename Range>
void ForEachStateRange(const Tensor& t, int64_t begin, int64_t end,
                       bool write_back, Rounding rounding, Range range) {
  if constexpr (std::is_same_v<typename Tensor::State, uint8_t>) {
    ForEachDequantizedBlock<Algorithm>(
        t.slots, t.absmax, begin, end, write_back,
        [&](int64_t first, int64_t count, float* const* state) {
          range(int64_t{0}, count, t.var + first, state, t.grad + first,
                rounding.Offset(first));
        });
  } else {
    range(begin, end, t.var, t.slots, t.grad, rounding);
  }
}

// The CPU functor of an elementwise algorithm (AdamW, Lion: element i of the
// update reads only element i of each buffer), slots stored as S, the
// variable stored with `Rounding` (math::RoundToNearest, or
// math::RoundStochastically for bfloat16 variables): the blocks of all
// tensors in one parallel loop. LAMB, whose trust ratio needs whole-tensor
// norms, specializes it.
template <typename T, typename C, typename Algorithm, typename S,
          typename Rounding>
struct CpuUpdate {
  using Tensor = CpuTensorDesc<T, S, kNumSlots<Algorithm>>;
  using Range = CpuRange<T, C, Algorithm>;

  void operator()(tensorflow::OpKernelContext* ctx,
                  const typename Algorithm::template Hyperparams<C>& hyper,
                  const std::vector<Tensor>& tensors) {
    ParallelForEachBlock(
        ctx, tensors, Range::kCyclesPerElement,
        [&](const Tensor& t, int64_t begin, int64_t end) {
          const auto step = Algorithm::StepFor(hyper, t.flags);
          ForEachStateRange<Algorithm>(
              t, begin, end, /*write_back=*/true, MakeRounding<Rounding>(t),
              [&](int64_t b, int64_t e, T* var, auto* const* slots,
                  const T* grad, Rounding rounding) {
                Range::Run(step, b, e, var, slots, grad, rounding);
              });
        });
  }
};

}  // namespace functor

template <typename Device, typename T, typename C, typename Algorithm>
class TensorListOp : public TensorListOpKernel {
 public:
  static constexpr int kDepth = kNumBuffers<Algorithm>;

  explicit TensorListOp(tensorflow::OpKernelConstruction* ctx)
      : TensorListOpKernel(ctx), flags_(num_variables_, 0) {
    OP_REQUIRES_OK(ctx, ReadStateLayout(ctx));
    for (size_t bit = 0; bit < std::size(Algorithm::kPerTensorFlags); ++bit) {
      std::vector<bool> values;
      OP_REQUIRES_OK(ctx, GetPerTensorFlags(
                              ctx, Algorithm::kPerTensorFlags[bit], &values));
      for (int i = 0; i < num_variables_; ++i) {
        if (values[i]) flags_[i] |= static_cast<uint8_t>(1 << bit);
      }
    }
    for (const Slot& slot : Algorithm::kSlots) {
      slot_names_.push_back(slot.name);
      if (slot.count_attr != nullptr) {
        OP_REQUIRES_OK(ctx, CheckOptionalSlotCount(ctx, slot.count_attr,
                                                   slot.name, slot.feature));
      }
    }
  }

  void Compute(tensorflow::OpKernelContext* ctx) override {
    typename Algorithm::template Hyperparams<C> hyper;
    TensorListUpdate in;
    OP_REQUIRES_OK(
        ctx, (in.Prepare<Device, T>(ctx, use_locking_, slot_names_,
                                    state_dtype_, state_dtype_source_,
                                    layout_ == StateLayout::kInt8, &hyper)));
    if constexpr (kIsHostDevice<Device>) {
      if constexpr (std::is_same_v<T, Eigen::bfloat16>) {
        if (stochastic_rounding_) {
          return RunOnCpuWithLayout<math::RoundStochastically>(ctx, hyper, in);
        }
      }
      RunOnCpuWithLayout<math::RoundToNearest>(ctx, hyper, in);
    } else {
      RunOnGpu(ctx, hyper, in);
    }
  }

 private:
  using Hyperparams = typename Algorithm::template Hyperparams<C>;

  template <typename Rounding>
  void RunOnCpuWithLayout(tensorflow::OpKernelContext* ctx,
                          const Hyperparams& hyper, TensorListUpdate& in) {
    if constexpr (!std::is_same_v<T, double>) {  // double: kSame only
      switch (layout_) {
        case StateLayout::kSame:
          break;
        case StateLayout::kFloat32:
          return RunOnCpu<float, Rounding>(ctx, hyper, in);
        case StateLayout::kBfloat16:
          return RunOnCpu<math::Bfloat16Bits, Rounding>(ctx, hyper, in);
        case StateLayout::kInt8:
          return RunOnCpu<uint8_t, Rounding>(ctx, hyper, in);
      }
    }
    RunOnCpu<T, Rounding>(ctx, hyper, in);
  }

  // S is the element type the CPU loops see: T, float, math::Bfloat16Bits
  // (the bits of a bfloat16 slot) or uint8_t (8-bit codes).
  template <typename S, typename Rounding>
  void RunOnCpu(tensorflow::OpKernelContext* ctx, const Hyperparams& hyper,
                TensorListUpdate& in) {
    tensorflow::OpInputList keys;
    OP_REQUIRES_OK(ctx, ctx->input_list("rounding_key", &keys));
    using Stored = std::conditional_t<std::is_same_v<S, math::Bfloat16Bits>,
                                      Eigen::bfloat16, S>;
    static_assert(sizeof(Stored) == sizeof(S));
    constexpr int kSlots = kNumSlots<Algorithm>;
    std::vector<CpuTensorDesc<T, S, kSlots>> tensors(in.size());
    for (int i = 0; i < in.size(); ++i) {
      CpuTensorDesc<T, S, kSlots>& t = tensors[i];
      t.var = in.var<T>(i);
      for (int k = 0; k < kSlots; ++k) {
        t.slots[k] = reinterpret_cast<S*>(in.slot<Stored>(k, i));
        t.absmax[k] = in.absmax(k, i);
      }
      t.grad = in.grad<T>(i);
      t.size = in.num_elements(i);
      t.flags = flags_[i];
      t.rounding_key = stochastic_rounding_ ? keys[i].scalar<uint32_t>()() : 0;
    }
    functor::CpuUpdate<T, C, Algorithm, S, Rounding>()(ctx, hyper, tensors);
  }

  void RunOnGpu(tensorflow::OpKernelContext* ctx, const Hyperparams& hyper,
                TensorListUpdate& in) {
    std::vector<TensorDesc<T, kDepth>> tensors(in.size());
    for (int i = 0; i < in.size(); ++i) {
      TensorDesc<T, kDepth>& t = tensors[i];
      t.ptrs[0] = in.var<T>(i);
      for (int slot = 0; slot < kDepth - 2; ++slot) {
        t.ptrs[slot + 1] = in.slot<T>(slot, i);
      }
      // Read only: no kernel writes the gradient.
      t.ptrs[kDepth - 1] = const_cast<T*>(in.grad<T>(i));
      t.size = in.num_elements(i);
      t.flags = flags_[i];
    }
    functor::ApplyUpdate<Device, T, C, Algorithm>()(ctx, hyper, tensors);
  }

  // Reads `state_dtype`: a layout whose stored dtype is T's is kSame; float64
  // variables and (so far) the GPU kernels take kSame only. Checks the
  // `absmax` list holds one vector per 8-bit slot.
  absl::Status ReadStateLayout(tensorflow::OpKernelConstruction* ctx) {
    std::string name;
    TF_RETURN_IF_ERROR(ctx->GetAttr("state_dtype", &name));
    TF_RETURN_IF_ERROR(ParseStateLayout(name, &layout_));
    const tensorflow::DataType t = tensorflow::DataTypeToEnum<T>::value;
    if ((layout_ == StateLayout::kFloat32 && t == tensorflow::DT_FLOAT) ||
        (layout_ == StateLayout::kBfloat16 && t == tensorflow::DT_BFLOAT16)) {
      layout_ = StateLayout::kSame;
    }
    if (layout_ != StateLayout::kSame && t == tensorflow::DT_DOUBLE) {
      return absl::InvalidArgumentError(absl::StrCat(
          "`state_dtype` must be \"same\" for float64 variables (narrower "
          "state is for float16, bfloat16 and float32 ones). Received: "
          "state_dtype=\"",
          name, "\""));
    }
    if (layout_ != StateLayout::kSame && !kIsHostDevice<Device>) {
      return absl::UnimplementedError(absl::StrCat(
          "The GPU kernels take slots of the variable's dtype only so far. "
          "Received: state_dtype=\"",
          name, "\" (the pure-TF twin runs it: fused=None)"));
    }
    switch (layout_) {
      case StateLayout::kSame:
        state_dtype_ = t;
        state_dtype_source_ = "the dtype of `grad`";
        break;
      case StateLayout::kFloat32:
        state_dtype_ = tensorflow::DT_FLOAT;
        break;
      case StateLayout::kBfloat16:
        state_dtype_ = tensorflow::DT_BFLOAT16;
        break;
      case StateLayout::kInt8:
        state_dtype_ = tensorflow::DT_UINT8;
        break;
    }
    if (layout_ != StateLayout::kSame) {
      state_dtype_source_ = absl::StrCat("state_dtype=\"", name, "\"");
    }
    int expected = 0;
    if (layout_ == StateLayout::kInt8) {
      for (const Slot& slot : Algorithm::kSlots) {
        int count = num_variables_;
        if (slot.count_attr != nullptr) {
          TF_RETURN_IF_ERROR(ctx->GetAttr(slot.count_attr, &count));
        }
        expected += count;
      }
    }
    int num_absmax = 0;
    TF_RETURN_IF_ERROR(ctx->GetAttr("num_absmax", &num_absmax));
    if (num_absmax != expected) {
      return absl::InvalidArgumentError(
          absl::StrCat("`absmax` must hold one variable per 8-bit slot (",
                       expected, " with state_dtype=\"", name,
                       "\"). Received: num_absmax=", num_absmax));
    }
    return ReadStochasticRounding(ctx);
  }

  // `rounding_key`: none (round the variable to nearest) or one uint32 per
  // variable (round it stochastically), for bfloat16 variables on the CPU.
  absl::Status ReadStochasticRounding(tensorflow::OpKernelConstruction* ctx) {
    int num_keys = 0;
    TF_RETURN_IF_ERROR(ctx->GetAttr("num_rounding_keys", &num_keys));
    stochastic_rounding_ = num_keys > 0;
    if (num_keys != 0 && num_keys != num_variables_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "`rounding_key` must hold no key (round to nearest) or one per "
          "variable (",
          num_variables_, "). Received: num_rounding_keys=", num_keys));
    }
    const tensorflow::DataType t = tensorflow::DataTypeToEnum<T>::value;
    if (stochastic_rounding_ && t != tensorflow::DT_BFLOAT16) {
      return absl::InvalidArgumentError(absl::StrCat(
          "`rounding_key` is for bfloat16 variables (stochastic rounding). "
          "Received: keys for variables of dtype ",
          tensorflow::DataTypeString(t)));
    }
    if (stochastic_rounding_ && !kIsHostDevice<Device>) {
      return absl::UnimplementedError(
          "The GPU kernels round to nearest only so far. Received: "
          "rounding_key (the pure-TF twin runs it: fused=None)");
    }
    return absl::OkStatus();
  }

  std::vector<uint8_t> flags_;  // per variable, see tensor_list.h
  std::vector<const char*> slot_names_;
  StateLayout layout_ = StateLayout::kSame;
  bool stochastic_rounding_ = false;
  tensorflow::DataType state_dtype_ = tensorflow::DT_INVALID;
  std::string state_dtype_source_;
};

// The CPU and (in a CUDA build) GPU kernels of both ops of the algorithm
// ALGORITHM (its traits struct, named like its ops): ResourceApplyALGORITHM
// and ResourceMultiTensorApplyALGORITHM. The GPU functors are instantiated by
// the device code (tensor_list_op_gpu.cu.cc).
#define TFOPT_REGISTER_TENSOR_LIST_KERNELS(ALGORITHM)               \
  TFOPT_DECLARE_GPU_FUNCTOR(functor::ApplyUpdate, ALGORITHM)        \
  template <typename Device, typename T, typename C>                \
  using ALGORITHM##Op = TensorListOp<Device, T, C, ALGORITHM>;      \
  TFOPT_REGISTER_KERNELS("ResourceApply" #ALGORITHM, ALGORITHM##Op) \
  TFOPT_REGISTER_KERNELS("ResourceMultiTensorApply" #ALGORITHM, ALGORITHM##Op)

}  // namespace tf_opt_plugin

#endif  // TF_OPT_PLUGIN_CC_KERNELS_TENSOR_LIST_OP_H_
