// The kernel of ResourceApplyAdamW and ResourceMultiTensorApplyAdamW (CPU
// and, with CUDA, GPU registrations) and its CPU functor: one pass over
// memory.
#define EIGEN_USE_THREADS

#include "cc/kernels/adamw_op.h"

#include "cc/kernels/cpu_parallel.h"
#include "cc/kernels/registration.h"
#include "cc/kernels/variable_access.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace tf_opt_plugin {

using CPUDevice = Eigen::ThreadPoolDevice;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;

namespace functor {

template <typename T, typename C, bool kAmsgrad>
TFOPT_CPU_CLONES void AdamWRange(const math::AdamWStep<C>& s, int64_t begin,
                                 int64_t end, T* __restrict var,
                                 T* __restrict m, T* __restrict v,
                                 T* __restrict vhat, const T* __restrict grad) {
  for (int64_t i = begin; i < end; ++i) {
    math::AdamWUpdateAt<T, C, kAmsgrad>(s, i, var, m, v, vhat, grad);
  }
}

template <typename T, typename C>
struct ApplyAdamW<CPUDevice, T, C> {
  void operator()(OpKernelContext* ctx, const AdamWHyperparams<C>& hyper,
                  const std::vector<AdamWTensor<T>>& tensors) {
    const math::AdamWStep<C> with_decay = math::MakeAdamWStep<C>(
        *hyper.lr, *hyper.beta_1, *hyper.beta_2, *hyper.epsilon,
        *hyper.weight_decay, *hyper.step);
    math::AdamWStep<C> without_decay = with_decay;
    without_decay.decay = C(0);
    // The blocks of all tensors in one parallel loop: the small tensors of a
    // model (biases, norms) run side by side instead of one after another.
    // ~25 cycles per element: a divide and a square root dominate.
    const std::vector<TensorBlock> blocks = SplitIntoBlocks(
        tensors.size(), [&](size_t t) { return tensors[t].size; });
    ParallelForTensorBlocks(
        ctx, blocks, /*cycles_per_element=*/25, [&](int64_t index) {
          const TensorBlock& b = blocks[index];
          const AdamWTensor<T>& t = tensors[b.tensor];
          const math::AdamWStep<C>& s =
              t.apply_weight_decay ? with_decay : without_decay;
          if (t.vhat == nullptr) {
            AdamWRange<T, C, false>(s, b.begin, b.end, t.var, t.m, t.v, nullptr,
                                    t.grad);
          } else {
            AdamWRange<T, C, true>(s, b.begin, b.end, t.var, t.m, t.v, t.vhat,
                                   t.grad);
          }
        });
  }
};

}  // namespace functor

// Defined in adamw_op_gpu.cu.cc.
TFOPT_DECLARE_GPU_FUNCTOR(functor::ApplyAdamW)

// N variables with the same hyperparameters (N = 1 for ResourceApplyAdamW);
// each variable's weight decay can be switched off (apply_weight_decay).
template <typename Device, typename T, typename C>
class ApplyAdamWOp : public TensorListOpKernel {
 public:
  explicit ApplyAdamWOp(OpKernelConstruction* ctx) : TensorListOpKernel(ctx) {
    OP_REQUIRES_OK(ctx, GetPerTensorFlags(ctx, "apply_weight_decay",
                                          &apply_weight_decay_));
    OP_REQUIRES_OK(ctx,
                   CheckOptionalSlotCount(ctx, "num_vhat", "vhat", "amsgrad"));
  }

  void Compute(OpKernelContext* ctx) override {
    functor::AdamWHyperparams<C> hyper;
    TensorListUpdate in;
    OP_REQUIRES_OK(ctx, (in.Prepare<Device, T>(ctx, use_locking_,
                                               {"m", "v", "vhat"}, &hyper)));
    std::vector<functor::AdamWTensor<T>> tensors(in.size());
    for (int i = 0; i < in.size(); ++i) {
      tensors[i] = {in.num_elements(i),    in.var<T>(i),     in.slot<T>(0, i),
                    in.slot<T>(1, i),      in.slot<T>(2, i), in.grad<T>(i),
                    apply_weight_decay_[i]};
    }
    functor::ApplyAdamW<Device, T, C>()(ctx, hyper, tensors);
  }

 private:
  std::vector<bool> apply_weight_decay_;
};

TFOPT_REGISTER_KERNELS("ResourceApplyAdamW", ApplyAdamWOp)
TFOPT_REGISTER_KERNELS("ResourceMultiTensorApplyAdamW", ApplyAdamWOp)

}  // namespace tf_opt_plugin
