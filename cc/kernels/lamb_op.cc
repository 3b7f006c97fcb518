// ResourceApplyLamb and ResourceMultiTensorApplyLamb kernels (CPU and, with
// CUDA, GPU registrations) and their CPU functors. Two passes: the trust
// ratio needs ||w|| and ||u|| over the whole variable before w can be written.
#define EIGEN_USE_THREADS

#include "cc/kernels/lamb_op.h"

#include <vector>

#include "cc/kernels/cpu_parallel.h"
#include "cc/kernels/registration.h"
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

template <typename T, typename C>
struct ApplyLambMulti<CPUDevice, T, C> {
  void operator()(OpKernelContext* ctx, const LambHyperparams<C>& hyper,
                  const std::vector<LambTensor<T>>& tensors) {
    const math::LambStep<C> with_decay =
        math::MakeLambStep<C>(*hyper.beta_1, *hyper.beta_2, *hyper.epsilon,
                              *hyper.weight_decay_rate, *hyper.step);
    math::LambStep<C> without_decay = with_decay;
    without_decay.weight_decay_rate = C(0);
    auto step_for = [&](const LambTensor<T>& t) -> const math::LambStep<C>& {
      return t.apply_weight_decay ? with_decay : without_decay;
    };
    // Pass 1 over the blocks of all tensors; a tensor's blocks are those of
    // its single-tensor op, so its norms (and the result) are the same.
    const std::vector<TensorBlock> blocks = SplitIntoBlocks(
        tensors.size(), [&](size_t t) { return tensors[t].size; });
    std::vector<double> w_partials(blocks.size()), u_partials(blocks.size());
    ParallelForTensorBlocks(
        ctx, blocks, /*cycles_per_element=*/30, [&](int64_t index) {
          const TensorBlock& b = blocks[index];
          const LambTensor<T>& t = tensors[b.tensor];
          LambMomentsRange<T, C>(step_for(t), b.begin, b.end, t.var, t.m, t.v,
                                 t.grad, &w_partials[index], &u_partials[index]);
        });
    std::vector<C> step_sizes(tensors.size());
    for (size_t first = 0; first < blocks.size();) {
      const size_t t = blocks[first].tensor;
      size_t last = first;
      double w_sum = 0.0, u_sum = 0.0;  // in block order, as SumInOrder
      for (; last < blocks.size() && blocks[last].tensor == t; ++last) {
        w_sum += w_partials[last];
        u_sum += u_partials[last];
      }
      step_sizes[t] = *hyper.lr * math::LambTrustRatio<C>(
                                      static_cast<C>(w_sum),
                                      static_cast<C>(u_sum),
                                      tensors[t].use_layer_adaptation);
      first = last;
    }
    ParallelForTensorBlocks(
        ctx, blocks, /*cycles_per_element=*/25, [&](int64_t index) {
          const TensorBlock& b = blocks[index];
          const LambTensor<T>& t = tensors[b.tensor];
          LambApplyRange<T, C>(step_for(t), step_sizes[b.tensor], b.begin,
                               b.end, t.var, t.m, t.v);
        });
  }
};

}  // namespace functor

// Defined in lamb_op_gpu.cu.cc.
TFOPT_DECLARE_GPU_FUNCTOR(functor::ApplyLamb)
TFOPT_DECLARE_GPU_FUNCTOR(functor::ApplyLambMulti)

namespace {

// The scalar inputs of both LAMB ops, in the field order of LambHyperparams
// (HyperparamsFromScalars reads them by position).
std::vector<const char*> LambScalarNames() {
  return {"lr", "beta_1", "beta_2", "epsilon", "weight_decay_rate", "step"};
}

}  // namespace

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
                            LambScalarNames(), &in)));
    OP_REQUIRES_OK(ctx, CheckSlotsAndGradMatchVar(in));
    if (kIsHostDevice<Device>) OP_REQUIRES_OK(ctx, CheckStep(*in.scalars[5]));

    const functor::LambHyperparams<C> hyper =
        HyperparamsFromScalars<functor::LambHyperparams, C>(
            in, use_layer_adaptation_);
    functor::ApplyLamb<Device, T, C>()(
        ctx, hyper, in.vars[0].NumElements(), in.vars[0].flat<T>().data(),
        in.vars[1].flat<T>().data(), in.vars[2].flat<T>().data(),
        in.grad->flat<T>().data());
  }

 private:
  bool use_locking_;
  bool use_layer_adaptation_;
};

// One update of N variables with the same hyperparameters; per variable,
// weight decay and layer adaptation can be switched off.
template <typename Device, typename T, typename C>
class ResourceMultiTensorApplyLambOp : public OpKernel {
 public:
  explicit ResourceMultiTensorApplyLambOp(OpKernelConstruction* ctx)
      : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("use_locking", &use_locking_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("N", &n_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("apply_weight_decay", &apply_weight_decay_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("use_layer_adaptation",
                                     &use_layer_adaptation_));
    OP_REQUIRES_OK(ctx, CheckPerTensorFlags("apply_weight_decay",
                                            apply_weight_decay_, n_));
    OP_REQUIRES_OK(ctx, CheckPerTensorFlags("use_layer_adaptation",
                                            use_layer_adaptation_, n_));
  }

  void Compute(OpKernelContext* ctx) override {
    UpdateInputs in;
    OP_REQUIRES_OK(ctx, (PrepareMultiUpdate<Device, T>(
                            ctx, use_locking_,
                            {{"var", true}, {"m", true}, {"v", true}},
                            LambScalarNames(), &in)));
    OP_REQUIRES_OK(ctx, CheckMultiSlotsAndGradsMatchVars(in, n_, {"m", "v"}));
    if (kIsHostDevice<Device>) OP_REQUIRES_OK(ctx, CheckStep(*in.scalars[5]));

    // Per-tensor layer adaptation comes with each tensor (LambTensor).
    const functor::LambHyperparams<C> hyper =
        HyperparamsFromScalars<functor::LambHyperparams, C>(
            in, /*use_layer_adaptation=*/true);
    std::vector<functor::LambTensor<T>> tensors(n_);
    for (int i = 0; i < n_; ++i) {
      tensors[i] = {in.vars[i].NumElements(),
                    in.vars[i].flat<T>().data(),
                    in.vars[n_ + i].flat<T>().data(),
                    in.vars[2 * n_ + i].flat<T>().data(),
                    in.grads[i]->flat<T>().data(),
                    apply_weight_decay_.empty() || apply_weight_decay_[i],
                    use_layer_adaptation_.empty() || use_layer_adaptation_[i]};
    }
    functor::ApplyLambMulti<Device, T, C>()(ctx, hyper, tensors);
  }

 private:
  bool use_locking_;
  int n_;
  std::vector<bool> apply_weight_decay_;
  std::vector<bool> use_layer_adaptation_;
};

TFOPT_REGISTER_CPU_KERNELS("ResourceApplyLamb", ResourceApplyLambOp)
TFOPT_REGISTER_GPU_KERNELS("ResourceApplyLamb", ResourceApplyLambOp)
TFOPT_REGISTER_CPU_KERNELS("ResourceMultiTensorApplyLamb",
                           ResourceMultiTensorApplyLambOp)
TFOPT_REGISTER_GPU_KERNELS("ResourceMultiTensorApplyLamb",
                           ResourceMultiTensorApplyLambOp)

}  // namespace tf_opt_plugin
