// The GPU functor of every tensor-list algorithm (tensor_list.h), written
// once: the list's buffers handed to the algorithm's LaunchUpdate (one launch
// per list, or one per pass: gpu/<algo>_kernel.cu.h) with the device scratch
// it asks for. Also the GPU DenseUpdate that TF's copy-on-write of a shared
// variable buffer needs (see variable_access.h).
#if GOOGLE_CUDA
#include "cc/kernels/gpu_launch.h"  // defines EIGEN_USE_GPU: first

#include <memory>
#include <vector>

#include "cc/kernels/adamw_op.h"
#include "cc/kernels/gpu/adamw_kernel.cu.h"
#include "cc/kernels/gpu/lamb_kernel.cu.h"
#include "cc/kernels/gpu/lion_kernel.cu.h"
#include "cc/kernels/lamb_op.h"
#include "cc/kernels/lion_op.h"
#include "cc/kernels/registration.h"
#include "cc/kernels/tensor_list.h"
#include "cc/kernels/variable_access.h"

namespace tf_opt_plugin {
namespace functor {

template <typename T, typename C, typename Algorithm>
struct ApplyUpdate<Eigen::GpuDevice, T, C, Algorithm> {
  static constexpr int kDepth = kNumBuffers<Algorithm>;
  using CT = typename gpu::CudaType<T>::type;

  void operator()(tensorflow::OpKernelContext* ctx,
                  const typename Algorithm::template Hyperparams<C>& hyper,
                  const std::vector<TensorDesc<T, kDepth>>& tensors) {
    std::vector<TensorDesc<CT, kDepth>> descs(tensors.size());
    for (size_t i = 0; i < tensors.size(); ++i) {
      for (int k = 0; k < kDepth; ++k) {
        descs[i].ptrs[k] = gpu::ToCuda(tensors[i].ptrs[k]);
      }
      descs[i].size = tensors[i].size;
      descs[i].flags = tensors[i].flags;
    }
    const int n = static_cast<int>(descs.size());
    gpu::LaunchWithScratch(
        ctx, ctx->op_kernel().type_string().c_str(),
        gpu::UpdateScratchBytes(hyper, descs.data(), n), [&](void* scratch) {
          // Up to ~27 KB: on the heap rather than an executor thread's stack.
          auto args = std::make_unique<
              gpu::TensorListArgs<CT, kDepth, gpu::kMultiTensorCapacity>>();
          return gpu::LaunchUpdate(gpu::Stream(ctx), hyper, descs.data(), n,
                                   scratch, args.get());
        });
  }
};

TFOPT_INSTANTIATE_GPU_FUNCTOR(ApplyUpdate, AdamW)
TFOPT_INSTANTIATE_GPU_FUNCTOR(ApplyUpdate, Lamb)
TFOPT_INSTANTIATE_GPU_FUNCTOR(ApplyUpdate, Lion)

}  // namespace functor
}  // namespace tf_opt_plugin

namespace tensorflow {
namespace functor {

// A device-to-device copy on the op's stream (declared in variable_access.h).
#define TFOPT_DEFINE_GPU_DENSE_ASSIGN(T, C)                                  \
  TFOPT_GPU_DENSE_ASSIGN(T) {                                                \
    cudaMemcpyAsync(params.data(), update.data(), params.size() * sizeof(T), \
                    cudaMemcpyDeviceToDevice, d.stream());                   \
  }
TFOPT_FOR_EACH_TYPE(TFOPT_DEFINE_GPU_DENSE_ASSIGN)
#undef TFOPT_DEFINE_GPU_DENSE_ASSIGN

}  // namespace functor
}  // namespace tensorflow

#endif  // GOOGLE_CUDA
