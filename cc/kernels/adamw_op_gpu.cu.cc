// The GPU functor of ResourceApplyAdamW and ResourceMultiTensorApplyAdamW (the
// kernel: gpu/adamw_kernel.cu.h), and the GPU DenseUpdate that TF's
// copy-on-write of a shared variable buffer needs (see variable_access.h).
#if GOOGLE_CUDA
#include "cc/kernels/gpu_launch.h"  // defines EIGEN_USE_GPU: first

#include <memory>
#include <vector>

#include "cc/kernels/adamw_op.h"
#include "cc/kernels/gpu/adamw_kernel.cu.h"
#include "cc/kernels/registration.h"
#include "cc/kernels/variable_access.h"

namespace tf_opt_plugin {
namespace functor {

using GPUDevice = Eigen::GpuDevice;

template <typename T, typename C>
struct ApplyAdamW<GPUDevice, T, C> {
  void operator()(tensorflow::OpKernelContext* ctx,
                  const AdamWHyperparams<C>& hyper,
                  const std::vector<AdamWTensor<T>>& tensors) {
    using CT = typename gpu::CudaType<T>::type;
    std::vector<gpu::AdamWTensorDesc<CT>> descs;
    descs.reserve(tensors.size());
    for (const AdamWTensor<T>& t : tensors) {
      descs.push_back(
          {{gpu::ToCuda(t.var), gpu::ToCuda(t.m), gpu::ToCuda(t.v),
            gpu::ToCuda(t.vhat), const_cast<CT*>(gpu::ToCuda(t.grad))},
           t.size,
           static_cast<uint8_t>(t.apply_weight_decay ? gpu::kApplyWeightDecay
                                                     : 0)});
    }
    // ~27 KB: on the heap rather than an executor thread's stack.
    auto args =
        std::make_unique<gpu::AdamWArgs<CT, gpu::kMultiTensorCapacity>>();
    OP_REQUIRES_OK(ctx, gpu::LaunchStatus(
                            ctx->op_kernel().type_string().c_str(),
                            gpu::LaunchAdamW<CT, C, gpu::kMultiTensorCapacity>(
                                gpu::Stream(ctx), hyper, descs.data(),
                                static_cast<int>(descs.size()), args.get())));
  }
};

TFOPT_INSTANTIATE_GPU_FUNCTOR(ApplyAdamW)

}  // namespace functor
}  // namespace tf_opt_plugin

namespace tensorflow {
namespace functor {

// A device-to-device copy on the op's stream (declared in variable_access.h).
#define TFOPT_DEFINE_GPU_DENSE_ASSIGN(T, C)                                  \
  template <>                                                                \
  void DenseUpdate<Eigen::GpuDevice, T, ASSIGN>::operator()(                 \
      const Eigen::GpuDevice& d, typename TTypes<T>::Flat params,            \
      typename TTypes<T>::ConstFlat update) {                                \
    cudaMemcpyAsync(params.data(), update.data(), params.size() * sizeof(T), \
                    cudaMemcpyDeviceToDevice, d.stream());                   \
  }
TFOPT_FOR_EACH_TYPE(TFOPT_DEFINE_GPU_DENSE_ASSIGN)
#undef TFOPT_DEFINE_GPU_DENSE_ASSIGN

}  // namespace functor
}  // namespace tensorflow

#endif  // GOOGLE_CUDA
