// What the TensorFlow-side CUDA functors (*_op_gpu.cu.cc) share: the CUDA
// type of a TF storage type, the op's stream, scratch memory and launch
// errors. Only for nvcc translation units with GOOGLE_CUDA; the device code
// itself lives in gpu/*.cu.h, which include no TensorFlow header.
#ifndef TF_OPT_PLUGIN_CC_KERNELS_GPU_LAUNCH_H_
#define TF_OPT_PLUGIN_CC_KERNELS_GPU_LAUNCH_H_

#if GOOGLE_CUDA
#define EIGEN_USE_GPU

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"

namespace tf_opt_plugin {
namespace gpu {

// Eigen::half / Eigen::bfloat16 buffers are handed to the kernels as CUDA's
// __half / __nv_bfloat16: the same 16 bits.
template <typename T>
struct CudaType {
  using type = T;
};
template <>
struct CudaType<Eigen::half> {
  using type = __half;
};
template <>
struct CudaType<Eigen::bfloat16> {
  using type = __nv_bfloat16;
};
static_assert(sizeof(Eigen::half) == sizeof(__half), "half layout");
static_assert(sizeof(Eigen::bfloat16) == sizeof(__nv_bfloat16),
              "bfloat16 layout");

template <typename T>
typename CudaType<T>::type* ToCuda(T* p) {
  return reinterpret_cast<typename CudaType<T>::type*>(p);
}
template <typename T>
const typename CudaType<T>::type* ToCuda(const T* p) {
  return reinterpret_cast<const typename CudaType<T>::type*>(p);
}

inline cudaStream_t Stream(tensorflow::OpKernelContext* ctx) {
  return ctx->eigen_device<Eigen::GpuDevice>().stream();
}

inline int SmCount(tensorflow::OpKernelContext* ctx) {
  return ctx->eigen_device<Eigen::GpuDevice>().getNumGpuMultiProcessors();
}

// `bytes` of device scratch for this op, freed by TF's stream-ordered
// allocator once the op's work on the stream is done; *ptr null when 0.
inline absl::Status AllocateScratch(tensorflow::OpKernelContext* ctx,
                                    int64_t bytes, tensorflow::Tensor* holder,
                                    void** ptr) {
  *ptr = nullptr;
  if (bytes <= 0) return absl::OkStatus();
  TF_RETURN_IF_ERROR(ctx->allocate_temp(
      tensorflow::DT_INT8, tensorflow::TensorShape({bytes}), holder));
  *ptr = holder->flat<int8_t>().data();
  return absl::OkStatus();
}

inline absl::Status LaunchStatus(const char* op, cudaError_t error) {
  if (error == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat(op, ": CUDA kernel launch failed: ", cudaGetErrorName(error),
                   ": ", cudaGetErrorString(error)));
}

// Launches `launch(scratch)`, which returns the cudaError_t of its launches,
// with `scratch_bytes` of device scratch; an error fails the op. The scratch
// outlives the launch: TF frees it only once the stream has run the kernels.
template <typename Launch>
void LaunchWithScratch(tensorflow::OpKernelContext* ctx, const char* op,
                       int64_t scratch_bytes, Launch launch) {
  tensorflow::Tensor scratch_holder;
  void* scratch = nullptr;
  OP_REQUIRES_OK(
      ctx, AllocateScratch(ctx, scratch_bytes, &scratch_holder, &scratch));
  OP_REQUIRES_OK(ctx, LaunchStatus(op, launch(scratch)));
}

}  // namespace gpu
}  // namespace tf_opt_plugin

#endif  // GOOGLE_CUDA
#endif  // TF_OPT_PLUGIN_CC_KERNELS_GPU_LAUNCH_H_
