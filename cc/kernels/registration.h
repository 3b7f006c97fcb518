// One place that lists the (T, Tscalar) pairs every optimizer op accepts, and
// the devices its kernels are registered for.
#ifndef TF_OPT_PLUGIN_CC_KERNELS_REGISTRATION_H_
#define TF_OPT_PLUGIN_CC_KERNELS_REGISTRATION_H_

#include "tensorflow/core/framework/op_kernel.h"

// Registers KERNEL<DEVICE_TYPE, T, C> as the DEVICE kernel of OP_NAME for each
// storage type T with its compute type C: half types are computed in float,
// double in double.
#define TFOPT_REGISTER_KERNEL_FOR(OP_NAME, KERNEL, DEVICE, DEVICE_TYPE, T, C) \
  REGISTER_KERNEL_BUILDER(Name(OP_NAME)                                       \
                              .Device(DEVICE)                                 \
                              .TypeConstraint<T>("T")                         \
                              .TypeConstraint<C>("Tscalar"),                  \
                          KERNEL<DEVICE_TYPE, T, C>);
#define TFOPT_REGISTER_KERNELS_ON(OP_NAME, KERNEL, DEVICE, DEVICE_TYPE)                    \
  TFOPT_REGISTER_KERNEL_FOR(OP_NAME, KERNEL, DEVICE, DEVICE_TYPE, Eigen::half, float)      \
  TFOPT_REGISTER_KERNEL_FOR(OP_NAME, KERNEL, DEVICE, DEVICE_TYPE, Eigen::bfloat16, float)  \
  TFOPT_REGISTER_KERNEL_FOR(OP_NAME, KERNEL, DEVICE, DEVICE_TYPE, float, float)            \
  TFOPT_REGISTER_KERNEL_FOR(OP_NAME, KERNEL, DEVICE, DEVICE_TYPE, double, double)

#define TFOPT_REGISTER_CPU_KERNELS(OP_NAME, KERNEL) \
  TFOPT_REGISTER_KERNELS_ON(OP_NAME, KERNEL, tensorflow::DEVICE_CPU, Eigen::ThreadPoolDevice)

// GPU kernels exist when the library is built with CUDA (configure.py found
// nvcc): the host code here is compiled with GOOGLE_CUDA=1 and the device
// functors come from the *_op_gpu.cu.cc files. Every input stays in device
// memory (resource handles are host memory by their dtype), so a step needs
// no host round trip.
#if GOOGLE_CUDA
#define TFOPT_REGISTER_GPU_KERNELS(OP_NAME, KERNEL) \
  TFOPT_REGISTER_KERNELS_ON(OP_NAME, KERNEL, tensorflow::DEVICE_GPU, Eigen::GpuDevice)
#else
#define TFOPT_REGISTER_GPU_KERNELS(OP_NAME, KERNEL)
#endif

#endif  // TF_OPT_PLUGIN_CC_KERNELS_REGISTRATION_H_
