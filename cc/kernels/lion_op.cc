// The kernel of ResourceApplyLion and ResourceMultiTensorApplyLion (CPU and,
// with CUDA, GPU registrations) and its CPU functor: one pass over memory,
// 20 bytes per float32 parameter (reads w, m, g; writes w, m).
#define EIGEN_USE_THREADS

#include "cc/kernels/lion_op.h"

#include "cc/kernels/cpu_parallel.h"
#include "cc/kernels/registration.h"
#include "cc/kernels/variable_access.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace tf_opt_plugin {

using CPUDevice = Eigen::ThreadPoolDevice;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;

namespace functor {

template <typename T, typename C>
TFOPT_CPU_CLONES void LionRange(const math::LionStep<C>& s, int64_t begin,
                                int64_t end, T* __restrict var, T* __restrict m,
                                const T* __restrict grad) {
  for (int64_t i = begin; i < end; ++i) {
    math::LionUpdateAt<T, C>(s, i, var, m, grad);
  }
}

template <typename T, typename C>
struct ApplyLion<CPUDevice, T, C> {
  void operator()(OpKernelContext* ctx, const LionHyperparams<C>& hyper,
                  const std::vector<LionTensor<T>>& tensors) {
    const math::LionStep<C> with_decay = math::MakeLionStep<C>(
        *hyper.lr, *hyper.beta_1, *hyper.beta_2, *hyper.weight_decay);
    math::LionStep<C> without_decay = with_decay;
    without_decay.decay = C(0);
    // No divide or square root: a few cycles per element, memory-bound.
    const std::vector<TensorBlock> blocks = SplitIntoBlocks(
        tensors.size(), [&](size_t t) { return tensors[t].size; });
    ParallelForTensorBlocks(
        ctx, blocks, /*cycles_per_element=*/8, [&](int64_t index) {
          const TensorBlock& b = blocks[index];
          const LionTensor<T>& t = tensors[b.tensor];
          LionRange<T, C>(t.apply_weight_decay ? with_decay : without_decay,
                          b.begin, b.end, t.var, t.m, t.grad);
        });
  }
};

}  // namespace functor

// Defined in lion_op_gpu.cu.cc.
TFOPT_DECLARE_GPU_FUNCTOR(functor::ApplyLion)

// N variables with the same hyperparameters (N = 1 for ResourceApplyLion);
// each variable's weight decay can be switched off (apply_weight_decay).
template <typename Device, typename T, typename C>
class ApplyLionOp : public TensorListOpKernel {
 public:
  explicit ApplyLionOp(OpKernelConstruction* ctx) : TensorListOpKernel(ctx) {
    OP_REQUIRES_OK(ctx, GetPerTensorFlags(ctx, "apply_weight_decay",
                                          &apply_weight_decay_));
  }

  void Compute(OpKernelContext* ctx) override {
    functor::LionHyperparams<C> hyper;
    TensorListUpdate in;
    OP_REQUIRES_OK(ctx,
                   (in.Prepare<Device, T>(ctx, use_locking_, {"m"}, &hyper)));
    std::vector<functor::LionTensor<T>> tensors(in.size());
    for (int i = 0; i < in.size(); ++i) {
      tensors[i] = {in.num_elements(i), in.var<T>(i), in.slot<T>(0, i),
                    in.grad<T>(i), apply_weight_decay_[i]};
    }
    functor::ApplyLion<Device, T, C>()(ctx, hyper, tensors);
  }

 private:
  std::vector<bool> apply_weight_decay_;
};

TFOPT_REGISTER_KERNELS("ResourceApplyLion", ApplyLionOp)
TFOPT_REGISTER_KERNELS("ResourceMultiTensorApplyLion", ApplyLionOp)

}  // namespace tf_opt_plugin
