// One place that lists the (T, Tscalar) pairs every optimizer op accepts.
#ifndef TF_OPT_PLUGIN_CC_KERNELS_CPU_REGISTRATION_H_
#define TF_OPT_PLUGIN_CC_KERNELS_CPU_REGISTRATION_H_

#include "tensorflow/core/framework/op_kernel.h"

// Registers KERNEL<Eigen::ThreadPoolDevice, T, C> as the CPU kernel of
// OP_NAME for each storage type T with its compute type C: half types are
// computed in float, double in double.
#define TFOPT_REGISTER_CPU_KERNEL_FOR(OP_NAME, KERNEL, T, C)      \
  REGISTER_KERNEL_BUILDER(Name(OP_NAME)                           \
                              .Device(tensorflow::DEVICE_CPU)     \
                              .TypeConstraint<T>("T")             \
                              .TypeConstraint<C>("Tscalar"),      \
                          KERNEL<Eigen::ThreadPoolDevice, T, C>);
#define TFOPT_REGISTER_CPU_KERNELS(OP_NAME, KERNEL)                       \
  TFOPT_REGISTER_CPU_KERNEL_FOR(OP_NAME, KERNEL, Eigen::half, float)      \
  TFOPT_REGISTER_CPU_KERNEL_FOR(OP_NAME, KERNEL, Eigen::bfloat16, float)  \
  TFOPT_REGISTER_CPU_KERNEL_FOR(OP_NAME, KERNEL, float, float)            \
  TFOPT_REGISTER_CPU_KERNEL_FOR(OP_NAME, KERNEL, double, double)

#endif  // TF_OPT_PLUGIN_CC_KERNELS_CPU_REGISTRATION_H_
