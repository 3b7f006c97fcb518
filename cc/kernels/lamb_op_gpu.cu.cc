// The GPU functor of ResourceApplyLamb and ResourceMultiTensorApplyLamb (the
// kernels: gpu/lamb_kernel.cu.h): three launches per list of tensors, the
// norms reduced on the device, no host synchronisation.
#if GOOGLE_CUDA
#include "cc/kernels/gpu_launch.h"  // defines EIGEN_USE_GPU: first

#include <memory>
#include <vector>

#include "cc/kernels/gpu/lamb_kernel.cu.h"
#include "cc/kernels/lamb_op.h"
#include "cc/kernels/registration.h"

namespace tf_opt_plugin {
namespace functor {

using GPUDevice = Eigen::GpuDevice;

namespace {

template <typename CT, typename C, int kCapacity>
void LaunchLambFor(tensorflow::OpKernelContext* ctx, const char* op,
                   const LambHyperparams<C>& hyper,
                   const std::vector<gpu::LambTensorDesc<CT>>& descs) {
  const int n = static_cast<int>(descs.size());
  gpu::LaunchWithScratch(
      ctx, op, gpu::LambScratchBytes<CT, C>(descs.data(), n),
      [&](void* scratch) {
        auto args = std::make_unique<gpu::LambArgs<CT, kCapacity>>();
        return gpu::LaunchLamb<CT, C, kCapacity>(
            gpu::Stream(ctx), hyper, descs.data(), n, scratch, args.get());
      });
}

uint8_t LambFlags(bool apply_weight_decay, bool use_layer_adaptation) {
  return static_cast<uint8_t>(
      (apply_weight_decay ? gpu::kApplyWeightDecay : 0) |
      (use_layer_adaptation ? gpu::kLayerAdaptation : 0));
}

}  // namespace

template <typename T, typename C>
struct ApplyLamb<GPUDevice, T, C> {
  void operator()(tensorflow::OpKernelContext* ctx,
                  const LambHyperparams<C>& hyper,
                  const std::vector<LambTensor<T>>& tensors) {
    using CT = typename gpu::CudaType<T>::type;
    std::vector<gpu::LambTensorDesc<CT>> descs;
    descs.reserve(tensors.size());
    for (const LambTensor<T>& t : tensors) {
      descs.push_back(
          {{gpu::ToCuda(t.var), gpu::ToCuda(t.m), gpu::ToCuda(t.v),
            const_cast<CT*>(gpu::ToCuda(t.grad))},
           t.size,
           LambFlags(t.apply_weight_decay, t.use_layer_adaptation)});
    }
    LaunchLambFor<CT, C, gpu::kMultiTensorCapacity>(
        ctx, ctx->op_kernel().type_string().c_str(), hyper, descs);
  }
};

TFOPT_INSTANTIATE_GPU_FUNCTOR(ApplyLamb)

}  // namespace functor
}  // namespace tf_opt_plugin

#endif  // GOOGLE_CUDA
