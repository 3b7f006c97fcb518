// One place that lists the (T, Tscalar) pairs every optimizer op accepts, and
// the devices its kernels are registered for.
#ifndef TF_OPT_PLUGIN_CC_KERNELS_REGISTRATION_H_
#define TF_OPT_PLUGIN_CC_KERNELS_REGISTRATION_H_

#include "tensorflow/core/framework/op_kernel.h"

// Expands M(T, C, args...) for each storage type T with its compute type C:
// half types are computed in float, double in double. Any arguments after M
// are passed on to it after T and C.
#define TFOPT_FOR_EACH_TYPE(M, ...)        \
  M(Eigen::half, float, ##__VA_ARGS__)     \
  M(Eigen::bfloat16, float, ##__VA_ARGS__) \
  M(float, float, ##__VA_ARGS__)           \
  M(double, double, ##__VA_ARGS__)

// Registers KERNEL<DEVICE_TYPE, T, C> as the DEVICE kernel of OP_NAME.
#define TFOPT_REGISTER_KERNEL_FOR(T, C, OP_NAME, KERNEL, DEVICE, DEVICE_TYPE) \
  REGISTER_KERNEL_BUILDER(                                                    \
      Name(OP_NAME).Device(DEVICE).TypeConstraint<T>("T").TypeConstraint<C>(  \
          "Tscalar"),                                                         \
      KERNEL<DEVICE_TYPE, T, C>);
#define TFOPT_REGISTER_KERNELS_ON(OP_NAME, KERNEL, DEVICE, DEVICE_TYPE)   \
  TFOPT_FOR_EACH_TYPE(TFOPT_REGISTER_KERNEL_FOR, OP_NAME, KERNEL, DEVICE, \
                      DEVICE_TYPE)

#define TFOPT_REGISTER_CPU_KERNELS(OP_NAME, KERNEL)                  \
  TFOPT_REGISTER_KERNELS_ON(OP_NAME, KERNEL, tensorflow::DEVICE_CPU, \
                            Eigen::ThreadPoolDevice)

// GPU kernels exist when the library is built with CUDA (configure.py found
// nvcc): the host code here is compiled with GOOGLE_CUDA=1 and the device
// functors come from the *_op_gpu.cu.cc files. Every input stays in device
// memory (resource handles are host memory by their dtype), so a step needs
// no host round trip.
//
// A GPU functor is defined in device code that only nvcc compiles: its
// *_op_gpu.cu.cc instantiates FUNCTOR<Eigen::GpuDevice, T, C, ARGS...> for
// every type (TFOPT_INSTANTIATE_GPU_FUNCTOR(FUNCTOR, ARGS...)), and the host
// code that calls it declares those instantiations
// (TFOPT_DECLARE_GPU_FUNCTOR(FUNCTOR, ARGS...)) instead of making its own.
#if GOOGLE_CUDA
#define TFOPT_REGISTER_GPU_KERNELS(OP_NAME, KERNEL)                  \
  TFOPT_REGISTER_KERNELS_ON(OP_NAME, KERNEL, tensorflow::DEVICE_GPU, \
                            Eigen::GpuDevice)

#define TFOPT_EXTERN_GPU_FUNCTOR_FOR(T, C, FUNCTOR, ...) \
  extern template struct FUNCTOR<Eigen::GpuDevice, T, C, ##__VA_ARGS__>;
#define TFOPT_DECLARE_GPU_FUNCTOR(FUNCTOR, ...) \
  TFOPT_FOR_EACH_TYPE(TFOPT_EXTERN_GPU_FUNCTOR_FOR, FUNCTOR, ##__VA_ARGS__)

#define TFOPT_INSTANTIATE_GPU_FUNCTOR_FOR(T, C, FUNCTOR, ...) \
  template struct FUNCTOR<Eigen::GpuDevice, T, C, ##__VA_ARGS__>;
#define TFOPT_INSTANTIATE_GPU_FUNCTOR(FUNCTOR, ...) \
  TFOPT_FOR_EACH_TYPE(TFOPT_INSTANTIATE_GPU_FUNCTOR_FOR, FUNCTOR, ##__VA_ARGS__)
#else
#define TFOPT_REGISTER_GPU_KERNELS(OP_NAME, KERNEL)
#define TFOPT_DECLARE_GPU_FUNCTOR(FUNCTOR, ...)
#endif

// The CPU and (in a CUDA build) GPU kernels of OP_NAME.
#define TFOPT_REGISTER_KERNELS(OP_NAME, KERNEL) \
  TFOPT_REGISTER_CPU_KERNELS(OP_NAME, KERNEL)   \
  TFOPT_REGISTER_GPU_KERNELS(OP_NAME, KERNEL)

#endif  // TF_OPT_PLUGIN_CC_KERNELS_REGISTRATION_H_
