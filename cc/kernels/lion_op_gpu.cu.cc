// The GPU functor of ResourceApplyLion and ResourceMultiTensorApplyLion (the
// kernel: gpu/lion_kernel.cu.h): one launch per list of tensors.
#if GOOGLE_CUDA
#include "cc/kernels/gpu_launch.h"  // defines EIGEN_USE_GPU: first

#include <memory>
#include <vector>

#include "cc/kernels/gpu/lion_kernel.cu.h"
#include "cc/kernels/lion_op.h"
#include "cc/kernels/registration.h"

namespace tf_opt_plugin {
namespace functor {

using GPUDevice = Eigen::GpuDevice;

template <typename T, typename C>
struct ApplyLion<GPUDevice, T, C> {
  void operator()(tensorflow::OpKernelContext* ctx,
                  const LionHyperparams<C>& hyper,
                  const std::vector<LionTensor<T>>& tensors) {
    using CT = typename gpu::CudaType<T>::type;
    std::vector<gpu::LionTensorDesc<CT>> descs;
    descs.reserve(tensors.size());
    for (const LionTensor<T>& t : tensors) {
      descs.push_back({{gpu::ToCuda(t.var), gpu::ToCuda(t.m),
                        const_cast<CT*>(gpu::ToCuda(t.grad))},
                       t.size,
                       static_cast<uint8_t>(
                           t.apply_weight_decay ? gpu::kApplyWeightDecay : 0)});
    }
    // ~17 KB: on the heap rather than an executor thread's stack.
    auto args =
        std::make_unique<gpu::LionArgs<CT, gpu::kMultiTensorCapacity>>();
    OP_REQUIRES_OK(ctx, gpu::LaunchStatus(
                            ctx->op_kernel().type_string().c_str(),
                            gpu::LaunchLion<CT, C, gpu::kMultiTensorCapacity>(
                                gpu::Stream(ctx), hyper, descs.data(),
                                static_cast<int>(descs.size()), args.get())));
  }
};

TFOPT_INSTANTIATE_GPU_FUNCTOR(ApplyLion)

}  // namespace functor
}  // namespace tf_opt_plugin

#endif  // GOOGLE_CUDA
