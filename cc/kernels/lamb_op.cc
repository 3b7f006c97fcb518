// ResourceApplyLamb kernel and its CPU functor. Two passes: the trust ratio
// needs ||w|| and ||u|| over the whole variable before w can be written.
#define EIGEN_USE_THREADS

#include "cc/kernels/lamb_op.h"

#include <vector>

#include "cc/kernels/cpu_parallel.h"
#include "cc/kernels/cpu_registration.h"
#include "cc/kernels/variable_access.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace tf_opt_plugin {

using CPUDevice = Eigen::ThreadPoolDevice;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;

namespace functor {

// Pass 1 over [begin, end): updates m and v, and returns the sums of squares
// of w and of the direction u over the range.
template <typename T, typename C>
TFOPT_CPU_CLONES void LambMomentsRange(const math::LambStep<C>& s,
                                       int64_t begin, int64_t end,
                                       const T* __restrict var,
                                       T* __restrict m, T* __restrict v,
                                       const T* __restrict grad,
                                       double* w_sum_squares,
                                       double* u_sum_squares) {
  C w_squares[kLanes] = {}, u_squares[kLanes] = {};
  ForEachWithLanes(begin, end, [&](int64_t i, int lane) {
    const C w = static_cast<C>(var[i]);
    C mi = static_cast<C>(m[i]);
    C vi = static_cast<C>(v[i]);
    const C u = math::LambMomentsAndDirection<C>(s, static_cast<C>(grad[i]), w,
                                                 mi, vi);
    m[i] = static_cast<T>(mi);
    v[i] = static_cast<T>(vi);
    w_squares[lane] += w * w;
    u_squares[lane] += u * u;
  });
  *w_sum_squares = SumLanes(w_squares);
  *u_sum_squares = SumLanes(u_squares);
}

// Pass 2 over [begin, end): w <- w - step_size * u, with u recomputed from the
// new moments (cheaper than a fourth full-size buffer to store it in).
template <typename T, typename C>
TFOPT_CPU_CLONES void LambApplyRange(const math::LambStep<C>& s, C step_size,
                                     int64_t begin, int64_t end,
                                     T* __restrict var, const T* __restrict m,
                                     const T* __restrict v) {
  for (int64_t i = begin; i < end; ++i) {
    const C w = static_cast<C>(var[i]);
    const C u = math::LambDirection<C>(s, w, static_cast<C>(m[i]),
                                       static_cast<C>(v[i]));
    var[i] = static_cast<T>(w - step_size * u);
  }
}

template <typename T, typename C>
struct ApplyLamb<CPUDevice, T, C> {
  void operator()(OpKernelContext* ctx, const LambHyperparams<C>& hyper,
                  int64_t size, T* var, T* m, T* v, const T* grad) {
    const math::LambStep<C> s =
        math::MakeLambStep<C>(*hyper.beta_1, *hyper.beta_2, *hyper.epsilon,
                              *hyper.weight_decay_rate, *hyper.step);
    const int64_t num_blocks = NumBlocks(size, kElementsPerBlock);
    std::vector<double> w_partials(num_blocks), u_partials(num_blocks);
    ParallelForBlocks(ctx, size, kElementsPerBlock, /*cycles_per_element=*/30,
                      [&](int64_t block, int64_t begin, int64_t end) {
                        LambMomentsRange<T, C>(s, begin, end, var, m, v, grad,
                                               &w_partials[block],
                                               &u_partials[block]);
                      });

    const C ratio = math::LambTrustRatio<C>(
        static_cast<C>(SumInOrder(w_partials)),
        static_cast<C>(SumInOrder(u_partials)), hyper.use_layer_adaptation);
    const C step_size = *hyper.lr * ratio;
    ParallelForBlocks(ctx, size, kElementsPerBlock, /*cycles_per_element=*/25,
                      [&](int64_t, int64_t begin, int64_t end) {
                        LambApplyRange<T, C>(s, step_size, begin, end, var, m,
                                             v);
                      });
  }
};

}  // namespace functor

template <typename Device, typename T, typename C>
class ResourceApplyLambOp : public OpKernel {
 public:
  explicit ResourceApplyLambOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("use_locking", &use_locking_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("use_layer_adaptation",
                                     &use_layer_adaptation_));
  }

  void Compute(OpKernelContext* ctx) override {
    UpdateInputs in;
    OP_REQUIRES_OK(ctx, (PrepareUpdate<Device, T>(
                            ctx, use_locking_,
                            {{"var", false}, {"m", false}, {"v", false}},
                            {"lr", "beta_1", "beta_2", "epsilon",
                             "weight_decay_rate", "step"},
                            &in)));
    OP_REQUIRES_OK(ctx, CheckSlotsAndGradMatchVar(in));
    OP_REQUIRES_OK(ctx, CheckStep(*in.scalars[5]));

    const functor::LambHyperparams<C> hyper{
        in.scalars[0]->scalar<C>().data(),
        in.scalars[1]->scalar<C>().data(),
        in.scalars[2]->scalar<C>().data(),
        in.scalars[3]->scalar<C>().data(),
        in.scalars[4]->scalar<C>().data(),
        in.scalars[5]->scalar<int64_t>().data(),
        use_layer_adaptation_};
    functor::ApplyLamb<Device, T, C>()(
        ctx, hyper, in.vars[0].NumElements(), in.vars[0].flat<T>().data(),
        in.vars[1].flat<T>().data(), in.vars[2].flat<T>().data(),
        in.grad->flat<T>().data());
  }

 private:
  bool use_locking_;
  bool use_layer_adaptation_;
};

TFOPT_REGISTER_CPU_KERNELS("ResourceApplyLamb", ResourceApplyLambOp)

}  // namespace tf_opt_plugin
