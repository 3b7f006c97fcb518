// ResourceApplyAdamW kernel and its CPU functor: one pass over memory.
#define EIGEN_USE_THREADS

#include "cc/kernels/adamw_op.h"

#include "cc/kernels/cpu_parallel.h"
#include "cc/kernels/cpu_registration.h"
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

}  // namespace functor

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
                            {"lr", "beta_1", "beta_2", "epsilon",
                             "weight_decay", "step"},
                            &in)));
    OP_REQUIRES_OK(ctx, CheckSlotsAndGradMatchVar(in));
    OP_REQUIRES_OK(ctx, CheckStep(*in.scalars[5]));

    const functor::AdamWHyperparams<C> hyper{
        in.scalars[0]->scalar<C>().data(), in.scalars[1]->scalar<C>().data(),
        in.scalars[2]->scalar<C>().data(), in.scalars[3]->scalar<C>().data(),
        in.scalars[4]->scalar<C>().data(),
        in.scalars[5]->scalar<int64_t>().data()};
    T* vhat = in.vars.size() == 4 ? in.vars[3].flat<T>().data() : nullptr;
    functor::ApplyAdamW<Device, T, C>()(
        ctx, hyper, in.vars[0].NumElements(), in.vars[0].flat<T>().data(),
        in.vars[1].flat<T>().data(), in.vars[2].flat<T>().data(), vhat,
        in.grad->flat<T>().data());
  }

 private:
  bool use_locking_;
};

TFOPT_REGISTER_CPU_KERNELS("ResourceApplyAdamW", ResourceApplyAdamWOp)

}  // namespace tf_opt_plugin
