// What every tensor-list algorithm (AdamW, LAMB, Lion) shares: the
// description of one variable of an update, the traits an algorithm declares
// and the one device functor its two ops run.
//
// An algorithm is a traits struct in its <algo>_op.h:
//
//   struct Lion {
//     template <typename C> using Hyperparams = functor::LionHyperparams<C>;
//     static constexpr Slot kSlots[] = {{"m"}};  // after var, in op order
//     static constexpr const char* kPerTensorFlags[] = {"apply_weight_decay"};
//     enum Buffer { kVar, kM, kGrad };  // TensorDesc::ptrs
//     // The per-element constants of a step (host and device).
//     template <typename C> static math::LionStep<C> StepFor(hyper, flags);
//   };
//
// from which the op registration (cc/ops/optimizer_op_def.h), the kernel
// (tensor_list_op.h) and the GPU functor (tensor_list_op_gpu.cu.cc) are
// written once; an algorithm adds only its math: in <algo>_op.cc its CPU
// loop (a CpuRange, or its own ApplyUpdate when it is not elementwise), in
// gpu/<algo>_kernel.cu.h its kernels and LaunchUpdate. No TensorFlow header:
// the GPU check includes this.
#ifndef TF_OPT_PLUGIN_CC_KERNELS_TENSOR_LIST_H_
#define TF_OPT_PLUGIN_CC_KERNELS_TENSOR_LIST_H_

#include <cstdint>
#include <iterator>
#include <vector>

#include "cc/kernels/math/host_device.h"

namespace tensorflow {
class OpKernelContext;
}

namespace tf_opt_plugin {

// A slot input, shaped like its variable. An optional slot (amsgrad's vhat)
// is a list of 0 or one per variable, counted by `count_attr`; `feature`
// names what it is for in errors. A `non_negative` slot (a second moment) is
// quantized with the unsigned dynamic map in 8-bit state.
struct Slot {
  const char* name;
  const char* count_attr = nullptr;
  const char* feature = nullptr;
  bool non_negative = false;
};

// How the slots of an update are stored: the ops' `state_dtype` attr ("same",
// "float32", "bfloat16", "int8"). An update reads its state widened to the
// compute type, updates it there and stores it back in its layout: kInt8 is
// block-wise 8-bit (math/quantization_math.h), uint8 codes shaped like the
// variable and a float32 absmax per block of 256 elements.
enum class StateLayout { kSame, kFloat32, kBfloat16, kInt8 };

// One variable of an update on the CPU, its slots stored as S (T, float or
// bfloat16; uint8 codes for kInt8): the variable, the slots in op order
// (null for an optional slot that is off), their absmax vectors (kInt8), the
// gradient, which is only read, and the key of its stochastic rounding (a
// bfloat16 variable with `rounding_key`).
template <typename T, typename S, int kNumSlots>
struct CpuTensorDesc {
  using State = S;
  T* var;
  S* slots[kNumSlots];
  float* absmax[kNumSlots];
  const T* grad;
  int64_t size;
  uint8_t flags;
  uint32_t rounding_key;
};

// Slot k of an algorithm is its Buffer k + 1 (the variable is buffer 0).
constexpr int SlotOf(int buffer) { return buffer - 1; }

// Per-variable flags, bit i for the algorithm's kPerTensorFlags[i].
constexpr uint8_t kApplyWeightDecay = 1;
constexpr uint8_t kLayerAdaptation = 2;

// Buffers of one variable: the variable, its slots (Algorithm::kSlots, null
// for an optional slot that is off) and the gradient, in op order.
template <typename Algorithm>
constexpr int kNumSlots = static_cast<int>(std::size(Algorithm::kSlots));
template <typename Algorithm>
constexpr int kNumBuffers = kNumSlots<Algorithm> + 2;

// One variable of an update: kDepth buffers of `size` elements (the variable,
// its slots, the gradient, which is only read) and its flags. The GPU
// kernels take the same layout (gpu/multi_tensor.cu.h).
template <typename T, int kDepth>
struct TensorDesc {
  T* ptrs[kDepth];
  int64_t size;
  uint8_t flags;
};

// `step` (an algorithm's per-element constants) as it applies to a variable
// with `flags`: its weight-decay term `decay` zeroed when kApplyWeightDecay
// is off.
template <typename Step, typename Value>
TFOPT_HOST_DEVICE Step StepForFlags(Step step, Value Step::* decay,
                                    uint8_t flags) {
  if (!(flags & kApplyWeightDecay)) step.*decay = Value(0);
  return step;
}

namespace functor {

// Updates every tensor of the list in place, with the same hyperparameters
// (on a GPU: one launch per list, or one per pass for a multi-pass
// algorithm). An op of one variable is a list of one.
template <typename Device, typename T, typename C, typename Algorithm>
struct ApplyUpdate {
  void operator()(
      tensorflow::OpKernelContext* ctx,
      const typename Algorithm::template Hyperparams<C>& hyper,
      const std::vector<TensorDesc<T, kNumBuffers<Algorithm>>>& tensors);
};

}  // namespace functor
}  // namespace tf_opt_plugin

#endif  // TF_OPT_PLUGIN_CC_KERNELS_TENSOR_LIST_H_
