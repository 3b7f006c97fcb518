// ResourceApplyAdamW and ResourceMultiTensorApplyAdamW kernels (CPU and, with
// CUDA, GPU registrations) and their CPU functors: one pass over memory.
#define EIGEN_USE_THREADS

#include "cc/kernels/adamw_op.h"

#include "absl/strings/str_cat.h"

#include "cc/kernels/cpu_parallel.h"
#include "cc/kernels/registration.h"
#include "cc/kernels/variable_access.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace tf_opt_plugin {

using CPUDevice = Eigen::ThreadPoolDevice;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;

namespace functor {

template <typename T, typename C, bool kAmsgrad>
TFOPT_CPU_CLONES void AdamWRange(const math::AdamWStep<C>& s, int64_t begin, int64_t end,
                T* __restrict var, T* __restrict m, T* __restrict v,
                T* __restrict vhat, const T* __restrict grad) {
  for (int64_t i = begin; i < end; ++i) {
    math::AdamWUpdateAt<T, C, kAmsgrad>(s, i, var, m, v, vhat, grad);
  }
}

template <typename T, typename C>
struct ApplyAdamW<CPUDevice, T, C> {
  void operator()(OpKernelContext* ctx, const AdamWHyperparams<C>& hyper,
                  int64_t size, T* var, T* m, T* v, T* vhat, const T* grad) {
    const math::AdamWStep<C> s = math::MakeAdamWStep<C>(
        *hyper.lr, *hyper.beta_1, *hyper.beta_2, *hyper.epsilon,
        *hyper.weight_decay, *hyper.step);
    // ~25 cycles: a divide and a square root per element dominate.
    ParallelForBlocks(ctx, size, kElementsPerBlock, /*cycles_per_element=*/25,
                      [&](int64_t, int64_t begin, int64_t end) {
                        if (vhat == nullptr) {
                          AdamWRange<T, C, false>(s, begin, end, var, m, v,
                                                  nullptr, grad);
                        } else {
                          AdamWRange<T, C, true>(s, begin, end, var, m, v,
                                                 vhat, grad);
                        }
                      });
  }
};

template <typename T, typename C>
struct ApplyAdamWMulti<CPUDevice, T, C> {
  void operator()(OpKernelContext* ctx, const AdamWHyperparams<C>& hyper,
                  const std::vector<AdamWTensor<T>>& tensors) {
    const math::AdamWStep<C> with_decay = math::MakeAdamWStep<C>(
        *hyper.lr, *hyper.beta_1, *hyper.beta_2, *hyper.epsilon,
        *hyper.weight_decay, *hyper.step);
    math::AdamWStep<C> without_decay = with_decay;
    without_decay.decay = C(0);
    // The blocks of all tensors in one parallel loop: the small tensors of a
    // model (biases, norms) run side by side instead of one after another.
    const std::vector<TensorBlock> blocks = SplitIntoBlocks(
        tensors.size(), [&](size_t t) { return tensors[t].size; });
    ParallelForTensorBlocks(
        ctx, blocks, /*cycles_per_element=*/25, [&](int64_t index) {
          const TensorBlock& b = blocks[index];
          const AdamWTensor<T>& t = tensors[b.tensor];
          const math::AdamWStep<C>& s =
              t.apply_weight_decay ? with_decay : without_decay;
          if (t.vhat == nullptr) {
            AdamWRange<T, C, false>(s, b.begin, b.end, t.var, t.m, t.v,
                                    nullptr, t.grad);
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
TFOPT_DECLARE_GPU_FUNCTOR(functor::ApplyAdamWMulti)

namespace {

// The scalar inputs of both AdamW ops, in the field order of
// AdamWHyperparams (HyperparamsFromScalars reads them by position).
std::vector<const char*> AdamWScalarNames() {
  return {"lr", "beta_1", "beta_2", "epsilon", "weight_decay", "step"};
}

}  // namespace

template <typename Device, typename T, typename C>
class ResourceApplyAdamWOp : public OpKernel {
 public:
  explicit ResourceApplyAdamWOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("use_locking", &use_locking_));
  }

  void Compute(OpKernelContext* ctx) override {
    UpdateInputs in;
    OP_REQUIRES_OK(ctx, (PrepareUpdate<Device, T>(
                            ctx, use_locking_,
                            {{"var", false}, {"m", false}, {"v", false},
                             {"vhat", true}},
                            AdamWScalarNames(), &in)));
    OP_REQUIRES_OK(ctx, CheckSlotsAndGradMatchVar(in));
    if (kIsHostDevice<Device>) OP_REQUIRES_OK(ctx, CheckStep(*in.scalars[5]));

    const functor::AdamWHyperparams<C> hyper =
        HyperparamsFromScalars<functor::AdamWHyperparams, C>(in);
    T* vhat = in.vars.size() == 4 ? in.vars[3].flat<T>().data() : nullptr;
    functor::ApplyAdamW<Device, T, C>()(
        ctx, hyper, in.vars[0].NumElements(), in.vars[0].flat<T>().data(),
        in.vars[1].flat<T>().data(), in.vars[2].flat<T>().data(), vhat,
        in.grad->flat<T>().data());
  }

 private:
  bool use_locking_;
};

// One update of N variables with the same hyperparameters; each variable's
// weight decay can be switched off (apply_weight_decay[i] = false).
template <typename Device, typename T, typename C>
class ResourceMultiTensorApplyAdamWOp : public OpKernel {
 public:
  explicit ResourceMultiTensorApplyAdamWOp(OpKernelConstruction* ctx)
      : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("use_locking", &use_locking_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("N", &n_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("apply_weight_decay", &apply_weight_decay_));
    OP_REQUIRES_OK(ctx, CheckPerTensorFlags("apply_weight_decay",
                                            apply_weight_decay_, n_));
    // Eager execution skips the shape function: check here too.
    int num_vhat = 0;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("num_vhat", &num_vhat));
    OP_REQUIRES(ctx, num_vhat == 0 || num_vhat == n_,
                absl::InvalidArgumentError(absl::StrCat(
                    "`vhat` must hold 0 variables (amsgrad off) or one per "
                    "variable (N=", n_, "). Received: num_vhat=", num_vhat)));
  }

  void Compute(OpKernelContext* ctx) override {
    UpdateInputs in;
    OP_REQUIRES_OK(ctx, (PrepareMultiUpdate<Device, T>(
                            ctx, use_locking_,
                            {{"var", true}, {"m", true}, {"v", true},
                             {"vhat", true}},
                            AdamWScalarNames(), &in)));
    const bool amsgrad = static_cast<int>(in.vars.size()) == 4 * n_;
    OP_REQUIRES_OK(ctx, CheckMultiSlotsAndGradsMatchVars(
                            in, n_,
                            amsgrad ? std::vector<const char*>{"m", "v", "vhat"}
                                    : std::vector<const char*>{"m", "v"}));
    if (kIsHostDevice<Device>) OP_REQUIRES_OK(ctx, CheckStep(*in.scalars[5]));

    const functor::AdamWHyperparams<C> hyper =
        HyperparamsFromScalars<functor::AdamWHyperparams, C>(in);
    std::vector<functor::AdamWTensor<T>> tensors(n_);
    for (int i = 0; i < n_; ++i) {
      tensors[i] = {in.vars[i].NumElements(),
                    in.vars[i].flat<T>().data(),
                    in.vars[n_ + i].flat<T>().data(),
                    in.vars[2 * n_ + i].flat<T>().data(),
                    amsgrad ? in.vars[3 * n_ + i].flat<T>().data() : nullptr,
                    in.grads[i]->flat<T>().data(),
                    apply_weight_decay_.empty() || apply_weight_decay_[i]};
    }
    functor::ApplyAdamWMulti<Device, T, C>()(ctx, hyper, tensors);
  }

 private:
  bool use_locking_;
  int n_;
  std::vector<bool> apply_weight_decay_;
};

TFOPT_REGISTER_CPU_KERNELS("ResourceApplyAdamW", ResourceApplyAdamWOp)
TFOPT_REGISTER_GPU_KERNELS("ResourceApplyAdamW", ResourceApplyAdamWOp)
TFOPT_REGISTER_CPU_KERNELS("ResourceMultiTensorApplyAdamW",
                           ResourceMultiTensorApplyAdamWOp)
TFOPT_REGISTER_GPU_KERNELS("ResourceMultiTensorApplyAdamW",
                           ResourceMultiTensorApplyAdamWOp)

}  // namespace tf_opt_plugin
