// Validation and in-place access shared by every optimizer kernel.
//
// Kernels validate in one fixed order, so the first error a user sees is the
// most fundamental one:
//   1. variables exist, are initialised (FailedPrecondition), are distinct
//      and have dtype T (InvalidArgument)
//   2. hyperparameters are scalars
//   3. slots and gradient have the shapes the variable implies
//   4. hyperparameter values are in range (step >= 1)
// Nothing is written before all checks pass.
#ifndef TF_OPT_PLUGIN_CC_KERNELS_VARIABLE_ACCESS_H_
#define TF_OPT_PLUGIN_CC_KERNELS_VARIABLE_ACCESS_H_

#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "cc/kernels/registration.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/resource_var.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/kernels/training_op_helpers.h"

#if GOOGLE_CUDA
#include "tensorflow/core/kernels/dense_update_functor.h"

// GetInputTensorFromVariable copies a variable whose buffer is shared before
// an update with DenseUpdate<GPUDevice, T, ASSIGN>, which only
// libtensorflow_cc.so.2 defines (the library links with -z defs against
// libtensorflow_framework.so.2 alone). adamw_op_gpu.cu.cc defines it
// (a device-to-device copy on the op's stream) for each storage type T (a
// copy has no compute type: C goes unused).
namespace tensorflow {
namespace functor {
#define TFOPT_DECLARE_GPU_DENSE_ASSIGN(T, C)                           \
  template <>                                                          \
  void DenseUpdate<Eigen::GpuDevice, T, ASSIGN>::operator()(           \
      const Eigen::GpuDevice& d, typename TTypes<T>::Flat params,      \
      typename TTypes<T>::ConstFlat update);
TFOPT_FOR_EACH_TYPE(TFOPT_DECLARE_GPU_DENSE_ASSIGN)
#undef TFOPT_DECLARE_GPU_DENSE_ASSIGN
}  // namespace functor
}  // namespace tensorflow
#endif  // GOOGLE_CUDA

namespace tf_opt_plugin {

// A resource-variable input of an op, and the name errors call it by.
struct VariableInput {
  int index;
  std::string name;
};

// Appends the resource input called `name` to `inputs`; for a list input
// (e.g. the Adafactor accumulators) each element, named `name[i]`.
absl::Status AppendVariableInputs(tensorflow::OpKernelContext* ctx,
                                  const std::string& name, bool is_list,
                                  std::vector<VariableInput>* inputs);

// Checks step 1 for every input under the locks and returns the tensors to
// update in place (copied first when their buffer is shared, as TF's own
// training ops do). Callers hold the lock holder for the whole update.
template <typename Device, typename T>
absl::Status GetVariablesForUpdate(tensorflow::OpKernelContext* ctx,
                                   const std::vector<VariableInput>& inputs,
                                   std::vector<tensorflow::Tensor>* tensors);

// Checks every input names a live variable (FailedPrecondition naming the
// first that does not), then locks them all in mutex address order, which
// keeps concurrent ops deadlock-free.
template <typename Device, typename T>
absl::Status LockVariables(
    tensorflow::OpKernelContext* ctx, bool use_locking,
    const std::vector<VariableInput>& inputs,
    std::optional<tensorflow::VariableInputLockHolder>* locks) {
  std::vector<int> ids;
  ids.reserve(inputs.size());
  for (const VariableInput& input : inputs) {
    tensorflow::core::RefCountPtr<tensorflow::Var> var;
    absl::Status status = tensorflow::LookupResource(
        ctx, tensorflow::HandleFromInput(ctx, input.index), &var);
    if (!status.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "Attempting to use uninitialized variable `", input.name,
          "`: it was never created, never assigned a value, or has been "
          "deleted. ", status.message()));
    }
    ids.push_back(input.index);
  }
  locks->emplace(tensorflow::MaybeLockVariableInputMutexesInOrder<Device, T>(
      ctx, use_locking, /*sparse=*/false, ids));
  return ctx->status();
}

// "`lr` must be a scalar. Received: lr.shape=[2]"
absl::Status CheckScalar(const char* name, const tensorflow::Tensor& tensor);

// Looks up each named scalar input and checks it is a scalar.
absl::Status GetScalarInputs(tensorflow::OpKernelContext* ctx,
                             const std::vector<const char*>& names,
                             std::vector<const tensorflow::Tensor*>* scalars);

// "`m` must have the shape of `var`. Received: var.shape=[3,4], m.shape=[4,3]"
absl::Status CheckSameShape(const std::string& name,
                            const tensorflow::Tensor& tensor,
                            const tensorflow::Tensor& var);

// "`step` must be >= 1 (the 1-based count of this update). Received: step=0"
absl::Status CheckStep(const tensorflow::Tensor& step);

// A resource input of an op, single or list-valued.
struct VariableSpec {
  const char* name;
  bool is_list;
};

// The locked and validated inputs of one optimizer update. `vars[0]` is the
// variable, the rest its slots in op order (for a multi-tensor op: every
// variable, then every first slot, ...); the locks are held for as long as
// this object lives.
struct UpdateInputs {
  std::vector<VariableInput> variables;
  std::optional<tensorflow::VariableInputLockHolder> locks;
  std::vector<tensorflow::Tensor> vars;
  std::vector<const tensorflow::Tensor*> scalars;
  const tensorflow::Tensor* grad = nullptr;
  std::vector<const tensorflow::Tensor*> grads;  // multi-tensor ops
};

// Steps 1 and 2 of the validation order for the resource inputs `variables`
// and the scalars `scalar_names`.
template <typename Device, typename T>
absl::Status PrepareVariablesAndScalars(
    tensorflow::OpKernelContext* ctx, bool use_locking,
    const std::vector<VariableSpec>& variables,
    const std::vector<const char*>& scalar_names, UpdateInputs* update) {
  for (const VariableSpec& spec : variables) {
    TF_RETURN_IF_ERROR(AppendVariableInputs(ctx, spec.name, spec.is_list,
                                            &update->variables));
  }
  TF_RETURN_IF_ERROR((LockVariables<Device, T>(ctx, use_locking,
                                               update->variables,
                                               &update->locks)));
  TF_RETURN_IF_ERROR(
      (GetVariablesForUpdate<Device, T>(ctx, update->variables, &update->vars)));
  return GetScalarInputs(ctx, scalar_names, &update->scalars);
}

// Steps 1 and 2 for an op whose inputs are `variables`, the scalars
// `scalar_names` and `grad`.
template <typename Device, typename T>
absl::Status PrepareUpdate(tensorflow::OpKernelContext* ctx, bool use_locking,
                           const std::vector<VariableSpec>& variables,
                           const std::vector<const char*>& scalar_names,
                           UpdateInputs* update) {
  TF_RETURN_IF_ERROR((PrepareVariablesAndScalars<Device, T>(
      ctx, use_locking, variables, scalar_names, update)));
  return ctx->input("grad", &update->grad);
}

// The same for a multi-tensor op, whose `grad` is a list (into `grads`).
template <typename Device, typename T>
absl::Status PrepareMultiUpdate(tensorflow::OpKernelContext* ctx,
                                bool use_locking,
                                const std::vector<VariableSpec>& variables,
                                const std::vector<const char*>& scalar_names,
                                UpdateInputs* update) {
  TF_RETURN_IF_ERROR((PrepareVariablesAndScalars<Device, T>(
      ctx, use_locking, variables, scalar_names, update)));
  tensorflow::OpInputList grads;
  TF_RETURN_IF_ERROR(ctx->input_list("grad", &grads));
  for (int i = 0; i < grads.size(); ++i) update->grads.push_back(&grads[i]);
  return absl::OkStatus();
}

// The hyperparameters of an op from its checked scalar inputs, pointing into
// the memory of the kernel's device. Every optimizer op takes five scalars of
// the compute type C and then `step`, in the field order of its
// Hyperparams<C>; attrs that follow them in the struct come as `attrs`.
template <template <typename> class Hyperparams, typename C,
          typename... Attrs>
Hyperparams<C> HyperparamsFromScalars(const UpdateInputs& update,
                                      Attrs... attrs) {
  const std::vector<const tensorflow::Tensor*>& s = update.scalars;
  return {s[0]->scalar<C>().data(), s[1]->scalar<C>().data(),
          s[2]->scalar<C>().data(), s[3]->scalar<C>().data(),
          s[4]->scalar<C>().data(), s[5]->scalar<int64_t>().data(), attrs...};
}

// Step 3 of a multi-tensor op with N variables whose every slot (`slot_names`
// in op order, each a list of N) is shaped like its variable:
// "`m[3]` must have the shape of `var[3]`. Received: var[3].shape=[2], ..."
absl::Status CheckMultiSlotsAndGradsMatchVars(
    const UpdateInputs& update, int n,
    const std::vector<const char*>& slot_names);

// A per-tensor list(bool) attr of a multi-tensor op: empty (all true) or one
// value per variable.
absl::Status CheckPerTensorFlags(const char* name,
                                 const std::vector<bool>& flags, int n);

// Whether a kernel runs on the host, where it can read its scalar inputs. A
// GPU kernel cannot without a synchronisation: it leaves the value checks
// (step >= 1, clip_threshold > 0) to the device (docs/gpu.md).
template <typename Device>
constexpr bool kIsHostDevice =
    std::is_same<Device, Eigen::ThreadPoolDevice>::value;

// "`clip_threshold` must be > 0. Received: clip_threshold=0"
template <typename C>
absl::Status CheckPositive(const char* name, const tensorflow::Tensor& scalar) {
  const C value = scalar.scalar<C>()();
  if (value > C(0)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "`", name, "` must be > 0. Received: ", name, "=", value));
}

// Step 3 for ops whose every slot is shaped like the variable.
absl::Status CheckSlotsAndGradMatchVar(const UpdateInputs& update);

// ---------------------------------------------------------------------------

template <typename Device, typename T>
absl::Status GetVariablesForUpdate(tensorflow::OpKernelContext* ctx,
                                   const std::vector<VariableInput>& inputs,
                                   std::vector<tensorflow::Tensor>* tensors) {
  using tensorflow::Var;
  const tensorflow::DataType expected = tensorflow::DataTypeToEnum<T>::value;
  // Var* -> index into inputs, for the distinctness check (a multi-tensor
  // op passes hundreds of variables).
  absl::flat_hash_map<Var*, size_t> seen;
  tensors->clear();
  tensors->reserve(inputs.size());
  for (const VariableInput& input : inputs) {
    tensorflow::core::RefCountPtr<Var> var;
    absl::Status status = tensorflow::LookupResource(
        ctx, tensorflow::HandleFromInput(ctx, input.index), &var);
    if (!status.ok()) return status;
    if (!var->is_initialized) {
      return absl::FailedPreconditionError(absl::StrCat(
          "Attempting to use uninitialized variable `", input.name,
          "`. Initialise it (e.g. tf.Variable(initial_value)) before "
          "applying an update."));
    }
    const auto inserted = seen.emplace(var.get(), tensors->size());
    if (!inserted.second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "`", inputs[inserted.first->second].name, "` and `", input.name,
          "` must be distinct variables. Received the same variable twice."));
    }
    const tensorflow::DataType actual = var->tensor()->dtype();
    if (actual != expected) {
      return absl::InvalidArgumentError(absl::StrCat(
          "`", input.name, "` must have dtype ",
          tensorflow::DataTypeString(expected), " (the dtype of `grad`). Received: ",
          input.name, ".dtype=", tensorflow::DataTypeString(actual)));
    }
    tensorflow::Tensor tensor;
    TF_RETURN_IF_ERROR((tensorflow::GetInputTensorFromVariable<Device, T>(
        ctx, input.index, /*lock_held=*/true, /*sparse=*/false, &tensor)));
    tensors->push_back(std::move(tensor));
  }
  return absl::OkStatus();
}

}  // namespace tf_opt_plugin

#endif  // TF_OPT_PLUGIN_CC_KERNELS_VARIABLE_ACCESS_H_
