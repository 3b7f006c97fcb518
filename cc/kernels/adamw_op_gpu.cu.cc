// GPU specialization of the AdamW functor. Compiled whenever nvcc is present
// so CUDA breakage fails CI; the GPU kernel is registered once it has been
// verified on a GPU (see README, "GPU status").
#if GOOGLE_CUDA
#define EIGEN_USE_GPU

#include "cc/kernels/adamw_op.h"
#include "cc/kernels/gpu/adamw_kernel.cu.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/util/gpu_launch_config.h"

namespace tf_opt_plugin {
namespace functor {

using GPUDevice = Eigen::GpuDevice;

template <typename T, typename C>
struct ApplyAdamW<GPUDevice, T, C> {
  void operator()(tensorflow::OpKernelContext* ctx,
                  const AdamWHyperparams<C>& hyper, int64_t size, T* var, T* m,
                  T* v, T* vhat, const T* grad) {
    const GPUDevice& device = ctx->eigen_device<GPUDevice>();
    const cudaError_t error =
        gpu::LaunchAdamW<T, C>(device.stream(), device.getNumGpuMultiProcessors(),
                               hyper, size, var, m, v, vhat, grad);
    OP_REQUIRES(ctx, error == cudaSuccess,
                absl::InternalError(absl::StrCat(
                    "ResourceApplyAdamW kernel launch failed: ",
                    cudaGetErrorString(error))));
  }
};

template struct ApplyAdamW<GPUDevice, Eigen::half, float>;
template struct ApplyAdamW<GPUDevice, Eigen::bfloat16, float>;
template struct ApplyAdamW<GPUDevice, float, float>;
template struct ApplyAdamW<GPUDevice, double, double>;

}  // namespace functor
}  // namespace tf_opt_plugin

#endif  // GOOGLE_CUDA
