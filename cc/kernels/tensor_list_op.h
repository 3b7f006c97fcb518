// The one kernel of every tensor-list algorithm (tensor_list.h): both ops of
// an algorithm, ResourceApplyX (a list of one variable) and
// ResourceMultiTensorApplyX (N variables with the same hyperparameters), on
// the CPU and, with CUDA, the GPU. It validates and locks the inputs in the
// fixed order (variable_access.h) and hands the list to
// functor::ApplyUpdate<Device, T, C, Algorithm>.
#ifndef TF_OPT_PLUGIN_CC_KERNELS_TENSOR_LIST_OP_H_
#define TF_OPT_PLUGIN_CC_KERNELS_TENSOR_LIST_OP_H_

#include <cstdint>
#include <iterator>
#include <vector>

#include "cc/kernels/cpu_parallel.h"
#include "cc/kernels/registration.h"
#include "cc/kernels/tensor_list.h"
#include "cc/kernels/variable_access.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace tf_opt_plugin {
namespace functor {

// An elementwise algorithm's update of elements [begin, end) of one tensor
// on the CPU, `Run(step, begin, end, ptrs)`, and its kCyclesPerElement for
// TF's cost model: specialized in its <algo>_op.cc.
template <typename T, typename C, typename Algorithm>
struct CpuRange;

// The CPU functor of an elementwise algorithm (AdamW, Lion: element i of the
// update reads only element i of each buffer): the blocks of all tensors in
// one parallel loop. LAMB, whose trust ratio needs whole-tensor norms,
// specializes ApplyUpdate itself.
template <typename T, typename C, typename Algorithm>
struct ApplyUpdate<Eigen::ThreadPoolDevice, T, C, Algorithm> {
  using Tensor = TensorDesc<T, kNumBuffers<Algorithm>>;
  using Range = CpuRange<T, C, Algorithm>;

  void operator()(tensorflow::OpKernelContext* ctx,
                  const typename Algorithm::template Hyperparams<C>& hyper,
                  const std::vector<Tensor>& tensors) {
    ParallelForEachBlock(ctx, tensors, Range::kCyclesPerElement,
                         [&](const Tensor& t, int64_t begin, int64_t end) {
                           Range::Run(Algorithm::StepFor(hyper, t.flags), begin,
                                      end, t.ptrs);
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
        ctx, (in.Prepare<Device, T>(ctx, use_locking_, slot_names_, &hyper)));
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

 private:
  std::vector<uint8_t> flags_;  // per variable, see tensor_list.h
  std::vector<const char*> slot_names_;
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
