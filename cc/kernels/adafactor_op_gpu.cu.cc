// GPU functors of ResourceApplyAdafactor (the kernels:
// gpu/adafactor_kernel.cu.h): row and column reductions, RMS(u) and RMS(w)
// all on the device, no host synchronisation.
#if GOOGLE_CUDA
#include "cc/kernels/gpu_launch.h"  // defines EIGEN_USE_GPU: first

#include "cc/kernels/adafactor_op.h"
#include "cc/kernels/gpu/adafactor_kernel.cu.h"
#include "cc/kernels/registration.h"

namespace tf_opt_plugin {
namespace functor {

using GPUDevice = Eigen::GpuDevice;

template <typename T, typename C>
struct ApplyAdafactorFactored<GPUDevice, T, C> {
  void operator()(tensorflow::OpKernelContext* ctx,
                  const AdafactorHyperparams<C>& hyper,
                  const FactoredShape& shape, T* var, T* row_acc, T* col_acc,
                  const T* grad) {
    gpu::LaunchWithScratch(
        ctx, "ResourceApplyAdafactor",
        gpu::AdafactorFactoredScratchBytes<C>(shape), [&](void* scratch) {
          return gpu::LaunchAdafactorFactored<typename gpu::CudaType<T>::type,
                                              C>(
              gpu::Stream(ctx), gpu::SmCount(ctx), hyper, shape,
              gpu::ToCuda(var), gpu::ToCuda(row_acc), gpu::ToCuda(col_acc),
              gpu::ToCuda(grad), scratch);
        });
  }
};

template <typename T, typename C>
struct ApplyAdafactorUnfactored<GPUDevice, T, C> {
  void operator()(tensorflow::OpKernelContext* ctx,
                  const AdafactorHyperparams<C>& hyper, int64_t size, T* var,
                  T* acc, const T* grad) {
    gpu::LaunchWithScratch(
        ctx, "ResourceApplyAdafactor",
        gpu::AdafactorUnfactoredScratchBytes<C>(size), [&](void* scratch) {
          return gpu::LaunchAdafactorUnfactored<typename gpu::CudaType<T>::type,
                                                C>(
              gpu::Stream(ctx), hyper, size, gpu::ToCuda(var), gpu::ToCuda(acc),
              gpu::ToCuda(grad), scratch);
        });
  }
};

TFOPT_INSTANTIATE_GPU_FUNCTOR(ApplyAdafactorFactored)
TFOPT_INSTANTIATE_GPU_FUNCTOR(ApplyAdafactorUnfactored)

}  // namespace functor
}  // namespace tf_opt_plugin

#endif  // GOOGLE_CUDA
