// Scalar hyperparameters plumbed by name.
//
// Every algorithm's hyperparameter struct (AdamWHyperparams, ...) holds one
// pointer per scalar input of its ops and lists them, in op order, in one
// member function:
//
//   template <typename Visit> void ForEachScalar(Visit&& visit) {
//     visit("lr", &lr); visit("beta_1", &beta_1); ... visit("step", &step);
//   }
//
// That list is the only place the names are written in C++: the shape
// functions check those inputs are scalars (ScalarInputNames), the kernels
// look them up and point the fields at them (ReadScalarInputs in
// variable_access.h), and a test checks the Python wrapper feeds the same
// names. No TensorFlow header: the GPU check includes this.
#ifndef TF_OPT_PLUGIN_CC_KERNELS_HYPERPARAMS_H_
#define TF_OPT_PLUGIN_CC_KERNELS_HYPERPARAMS_H_

#include <vector>

namespace tf_opt_plugin {

// The scalar input names of Hyperparams, in op order.
template <template <typename> class Hyperparams>
std::vector<const char*> ScalarInputNames() {
  std::vector<const char*> names;
  Hyperparams<float> hyper{};
  hyper.ForEachScalar([&](const char* name, auto*) { names.push_back(name); });
  return names;
}

}  // namespace tf_opt_plugin

#endif  // TF_OPT_PLUGIN_CC_KERNELS_HYPERPARAMS_H_
