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

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "cc/kernels/registration.h"
#include "cc/kernels/tensor_list.h"
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
// libtensorflow_framework.so.2 alone). tensor_list_op_gpu.cu.cc defines it
// (a device-to-device copy on the op's stream) for each storage type T (a
// copy has no compute type: C goes unused).
namespace tensorflow {
namespace functor {
// The specialization's signature, for its declaration here and its
// definition.
#define TFOPT_GPU_DENSE_ASSIGN(T)                                 \
  template <>                                                     \
  void DenseUpdate<Eigen::GpuDevice, T, ASSIGN>::operator()(      \
      const Eigen::GpuDevice& d, typename TTypes<T>::Flat params, \
      typename TTypes<T>::ConstFlat update)
#define TFOPT_DECLARE_GPU_DENSE_ASSIGN(T, C) TFOPT_GPU_DENSE_ASSIGN(T);
TFOPT_FOR_EACH_TYPE(TFOPT_DECLARE_GPU_DENSE_ASSIGN)
#undef TFOPT_DECLARE_GPU_DENSE_ASSIGN
}  // namespace functor
}  // namespace tensorflow
#endif  // GOOGLE_CUDA

namespace tf_opt_plugin {

// A resource-variable input of an op, the name errors call it by, the dtype
// it must have and what requires that dtype ("the dtype of `grad`").
struct VariableInput {
  int index;
  std::string name;
  tensorflow::DataType dtype = tensorflow::DT_INVALID;
  std::string dtype_source;
};

// The resource inputs of an update of one dtype: each input called `name`
// (a resource or a list of them) must hold variables of `dtype`, as
// `dtype_source` requires.
struct VariableInputSpec {
  const char* name;
  tensorflow::DataType dtype;
  std::string dtype_source;
};

// Whether the input `name` of the kernel's op is a list (its arg has a
// number or type-list attr): its elements are then called name[i] in errors.
bool IsListInput(const tensorflow::OpKernel& kernel, const char* name);

// Appends the resource input `spec.name` to `inputs`; for a list input
// (e.g. the Adafactor accumulators) each element, named `name[i]`.
absl::Status AppendVariableInputs(tensorflow::OpKernelContext* ctx,
                                  const VariableInputSpec& spec,
                                  std::vector<VariableInput>* inputs);

// Checks step 1 for every input under the locks and returns the tensors to
// update in place (copied first when their buffer is shared, as TF's own
// training ops do). Callers hold the lock holder for the whole update.
template <typename Device>
absl::Status GetVariablesForUpdate(tensorflow::OpKernelContext* ctx,
                                   const std::vector<VariableInput>& inputs,
                                   std::vector<tensorflow::Tensor>* tensors);

// A handle of another kind of resource (a lookup table, a dataset
// iterator) is an InvalidArgument error saying `name` is not a variable,
// rather than the "uninitialized variable" its failed lookup would report.
absl::Status CheckIsVariableHandle(const tensorflow::ResourceHandle& handle,
                                   const std::string& name);

// Checks every input is a variable handle (CheckIsVariableHandle) and names
// a live variable (FailedPrecondition naming the first that does not), then
// locks each distinct variable once, in mutex address order, which keeps
// concurrent ops deadlock-free. Like TF's
// MaybeLockVariableInputMutexesInOrder for a dense update of resource
// variables (which takes the exclusive lock whatever `use_locking` says), but
// the duplicates are dropped by one sort, O(N log N): TF's helper scans the
// mutexes taken so far for every input, and a multi-tensor op of 16,000
// variables spent 263 ms locking.
template <typename Device>
absl::Status LockVariables(
    tensorflow::OpKernelContext* ctx, bool use_locking,
    const std::vector<VariableInput>& inputs,
    std::optional<tensorflow::VariableInputLockHolder>* locks) {
  (void)use_locking;
  std::vector<tensorflow::Var*> vars;  // one reference each, for the holder
  vars.reserve(inputs.size());
  std::vector<tsl::mutex*> mutexes;
  mutexes.reserve(inputs.size());
  for (const VariableInput& input : inputs) {
    const tensorflow::ResourceHandle& handle =
        tensorflow::HandleFromInput(ctx, input.index);
    absl::Status status = CheckIsVariableHandle(handle, input.name);
    if (!status.ok()) {
      for (tensorflow::Var* held : vars) held->Unref();
      return status;
    }
    tensorflow::Var* var = nullptr;
    status = tensorflow::LookupResource(ctx, handle, &var);
    if (!status.ok()) {
      for (tensorflow::Var* held : vars) held->Unref();
      return absl::FailedPreconditionError(absl::StrCat(
          "Attempting to use uninitialized variable `", input.name,
          "`: it was never created, never assigned a value, or has been "
          "deleted. ",
          status.message()));
    }
    vars.push_back(var);
    mutexes.push_back(var->mu());
  }
  std::sort(mutexes.begin(), mutexes.end());
  mutexes.erase(std::unique(mutexes.begin(), mutexes.end()), mutexes.end());
  auto exclusive = std::make_unique<std::vector<tsl::mutex_lock>>();
  exclusive->reserve(mutexes.size());
  for (tsl::mutex* mu : mutexes) exclusive->emplace_back(*mu);
  locks->emplace(std::move(vars), std::move(exclusive),
                 std::make_unique<std::vector<tsl::tf_shared_lock>>());
  return absl::OkStatus();
}

// "`lr` must be a scalar. Received: lr.shape=[2]"
absl::Status CheckScalar(const char* name, const tensorflow::Tensor& tensor);

// "`m` must have the shape of `var`. Received: var.shape=[3,4], m.shape=[4,3]"
absl::Status CheckSameShape(const std::string& name,
                            const tensorflow::Tensor& tensor,
                            const tensorflow::Tensor& var);

// "`step` must be >= 1 (the 1-based count of this update). Received: step=0"
absl::Status CheckStep(int64_t step);

// Looks up every scalar input of `hyper` by the name its ForEachScalar gives
// (hyperparams.h), checks it is a scalar and points the field at its value in
// the memory of the kernel's device.
template <typename Hyperparams>
absl::Status ReadScalarInputs(tensorflow::OpKernelContext* ctx,
                              Hyperparams* hyper) {
  absl::Status status;
  hyper->ForEachScalar([&](const char* name, auto* field) {
    using Value = std::remove_const_t<
        std::remove_pointer_t<std::remove_pointer_t<decltype(field)>>>;
    if (!status.ok()) return;
    const tensorflow::Tensor* tensor = nullptr;
    status = ctx->input(name, &tensor);
    if (status.ok()) status = CheckScalar(name, *tensor);
    if (status.ok()) *field = tensor->scalar<Value>().data();
  });
  return status;
}

// Whether a kernel runs on the host, where it can read its scalar inputs. A
// GPU kernel cannot without a synchronisation: it leaves the value checks
// (step >= 1, clip_threshold > 0) to the device (docs/gpu.md).
template <typename Device>
constexpr bool kIsHostDevice =
    std::is_same<Device, Eigen::ThreadPoolDevice>::value;

// Step 4 for the scalars every algorithm shares: `step` >= 1, where the op has
// a step and the kernel runs on the host.
template <typename Device, typename Hyperparams>
absl::Status CheckScalarValues(const tensorflow::OpKernelContext* ctx,
                               Hyperparams hyper) {
  absl::Status status;
  if (!kIsHostDevice<Device>) return status;
  hyper.ForEachScalar([&](const char* name, auto* field) {
    if constexpr (std::is_same_v<decltype(field), const int64_t**>) {
      if (status.ok()) status = CheckStep(**field);
    }
  });
  return status;
}

// "`clip_threshold` must be > 0. Received: clip_threshold=0"
template <typename C>
absl::Status CheckPositive(const char* name, C value) {
  if (value > C(0)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("`", name, "` must be > 0. Received: ", name, "=", value));
}

// The locked inputs of one optimizer update: `variables` names each resource
// input (the variable, then its slots, in op order), `vars` holds their
// tensors to update in place; the locks are held for as long as this object
// lives.
struct LockedVariables {
  std::vector<VariableInput> variables;
  std::optional<tensorflow::VariableInputLockHolder> locks;
  std::vector<tensorflow::Tensor> vars;
};

// Step 1 of the validation order for the resource inputs of `specs`:
// locks them all, then checks each exists, is initialised, is distinct and
// has its spec's dtype.
template <typename Device>
absl::Status LockAndGetVariables(tensorflow::OpKernelContext* ctx,
                                 bool use_locking,
                                 const std::vector<VariableInputSpec>& specs,
                                 LockedVariables* locked) {
  for (const VariableInputSpec& spec : specs) {
    TF_RETURN_IF_ERROR(AppendVariableInputs(ctx, spec, &locked->variables));
  }
  TF_RETURN_IF_ERROR((LockVariables<Device>(ctx, use_locking, locked->variables,
                                            &locked->locks)));
  return GetVariablesForUpdate<Device>(ctx, locked->variables, &locked->vars);
}

// The same for inputs that all hold variables of the gradient's dtype T.
template <typename Device, typename T>
absl::Status LockAndGetVariables(tensorflow::OpKernelContext* ctx,
                                 bool use_locking,
                                 const std::vector<const char*>& names,
                                 LockedVariables* locked) {
  std::vector<VariableInputSpec> specs;
  for (const char* name : names) {
    specs.push_back(
        {name, tensorflow::DataTypeToEnum<T>::value, "the dtype of `grad`"});
  }
  return LockAndGetVariables<Device>(ctx, use_locking, specs, locked);
}

// The validated inputs of an op that updates N variables (N = 1 for the
// single-variable ops) whose every slot is shaped like its variable: the
// slot lists follow the variables in op order, each of N tensors, or of none
// for an optional slot that is off (amsgrad's vhat). Slots are stored as the
// op's StateLayout says (tensor_list.h); 8-bit slots come with the `absmax`
// list: for each slot in use, in op order, N float32 vectors of one value per
// block of 256 elements.
class TensorListUpdate {
 public:
  int size() const { return n_; }
  // Element count of variable i.
  int64_t num_elements(int i) const { return locked_.vars[i].NumElements(); }
  template <typename T>
  T* var(int i) {
    return locked_.vars[i].flat<T>().data();
  }
  // Slot `slot` (0-based, in op order) of variable i; null when absent.
  template <typename S>
  S* slot(int slot, int i) {
    const size_t index = static_cast<size_t>(slot + 1) * n_ + i;
    return index < num_slot_tensors_ ? locked_.vars[index].flat<S>().data()
                                     : nullptr;
  }
  bool has_slot(int slot) const {
    return static_cast<size_t>(slot + 1) * n_ < num_slot_tensors_;
  }
  // The absmax of slot `slot` of variable i (8-bit state); null when absent.
  float* absmax(int slot, int i) {
    if (!has_slot(slot) || num_slot_tensors_ == locked_.vars.size()) {
      return nullptr;
    }
    // Absent optional slots have no absmax: count the slots before `slot`.
    size_t index = num_slot_tensors_ + i;
    for (int k = 0; k < slot; ++k) index += has_slot(k) ? n_ : 0;
    return locked_.vars[index].flat<float>().data();
  }
  template <typename T>
  const T* grad(int i) const {
    return grads_[i].flat<T>().data();
  }

  // Validates in the fixed order (variable_access.h) the inputs "var", each
  // of `slot_names` (of dtype `state_dtype`, per `state_dtype_source`), with
  // `absmax` the input "absmax", and "grad", reads the scalars of `hyper`
  // and locks the variables until this object dies.
  template <typename Device, typename T, typename Hyperparams>
  absl::Status Prepare(tensorflow::OpKernelContext* ctx, bool use_locking,
                       const std::vector<const char*>& slot_names,
                       tensorflow::DataType state_dtype,
                       const std::string& state_dtype_source, bool absmax,
                       Hyperparams* hyper) {
    const tensorflow::DataType dtype = tensorflow::DataTypeToEnum<T>::value;
    std::vector<VariableInputSpec> specs = {
        {"var", dtype, "the dtype of `grad`"}};
    for (const char* name : slot_names) {
      specs.push_back({name, state_dtype, state_dtype_source});
    }
    if (absmax) {
      specs.push_back({"absmax", tensorflow::DT_FLOAT, state_dtype_source});
    }
    TF_RETURN_IF_ERROR(
        LockAndGetVariables<Device>(ctx, use_locking, specs, &locked_));
    TF_RETURN_IF_ERROR(ReadScalarInputs(ctx, hyper));
    tensorflow::OpInputList grads;
    TF_RETURN_IF_ERROR(ctx->input_list("grad", &grads));
    n_ = grads.size();
    for (int i = 0; i < n_; ++i) grads_.push_back(grads[i]);
    num_slot_tensors_ = locked_.vars.size();
    if (absmax) {
      int start = 0, stop = 0;
      TF_RETURN_IF_ERROR(ctx->op_kernel().InputRange("absmax", &start, &stop));
      num_slot_tensors_ -= stop - start;
    }
    TF_RETURN_IF_ERROR(CheckShapes(IsListInput(ctx->op_kernel(), "grad")));
    return CheckScalarValues<Device>(ctx, *hyper);
  }

 private:
  // Step 3: every slot and gradient shaped like its variable (named var[i],
  // grad[i] when `is_list`), every absmax of one value per block of 256.
  absl::Status CheckShapes(bool is_list) const;

  int n_ = 0;
  LockedVariables locked_;
  // The variables and slots of locked_.vars; the absmax vectors follow.
  size_t num_slot_tensors_ = 0;
  std::vector<tensorflow::Tensor> grads_;
};

// The layout named by a `state_dtype` attr value (tensor_list.h).
absl::Status ParseStateLayout(const std::string& name, StateLayout* layout);

// The base of every tensor-list optimizer kernel: reads `use_locking` and
// checks the per-variable attrs (which eager execution, skipping the shape
// function, would otherwise let through).
class TensorListOpKernel : public tensorflow::OpKernel {
 public:
  explicit TensorListOpKernel(tensorflow::OpKernelConstruction* ctx);

 protected:
  // One flag per variable from the attr `name`: a list(bool) of N values or
  // empty (all true), or, on a single-variable op, a bool; all true when the
  // op has no such attr.
  absl::Status GetPerTensorFlags(tensorflow::OpKernelConstruction* ctx,
                                 const char* name,
                                 std::vector<bool>* flags) const;

  // The optional slot list `slot` (counted by the attr `count_attr`) holds no
  // variable or one per variable.
  absl::Status CheckOptionalSlotCount(tensorflow::OpKernelConstruction* ctx,
                                      const char* count_attr, const char* slot,
                                      const char* what) const;

  bool use_locking_ = true;
  int num_variables_ = 0;
};

// ---------------------------------------------------------------------------

// GetInputTensorFromVariable for a variable of `dtype`: one of the variable
// dtypes (TFOPT_FOR_EACH_TYPE) or, on the CPU, uint8 (8-bit state).
template <typename Device>
absl::Status GetInputTensor(tensorflow::OpKernelContext* ctx, int index,
                            tensorflow::DataType dtype,
                            tensorflow::Tensor* tensor) {
  absl::Status status = absl::InternalError(absl::StrCat(
      "No in-place access to variables of dtype ", DataTypeString(dtype)));
  auto get = [&](auto value) {
    using V = decltype(value);
    if (dtype != tensorflow::DataTypeToEnum<V>::value) return;
    status = tensorflow::GetInputTensorFromVariable<Device, V>(
        ctx, index, /*lock_held=*/true, /*sparse=*/false, tensor);
  };
#define TFOPT_GET_INPUT_TENSOR(T, C) get(T());
  TFOPT_FOR_EACH_TYPE(TFOPT_GET_INPUT_TENSOR)
#undef TFOPT_GET_INPUT_TENSOR
  if constexpr (kIsHostDevice<Device>) get(uint8_t());
  return status;
}

template <typename Device>
absl::Status GetVariablesForUpdate(tensorflow::OpKernelContext* ctx,
                                   const std::vector<VariableInput>& inputs,
                                   std::vector<tensorflow::Tensor>* tensors) {
  using tensorflow::Var;
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
    if (actual != input.dtype) {
      return absl::InvalidArgumentError(
          absl::StrCat("`", input.name, "` must have dtype ",
                       tensorflow::DataTypeString(input.dtype), " (",
                       input.dtype_source, "). Received: ", input.name,
                       ".dtype=", tensorflow::DataTypeString(actual)));
    }
    tensorflow::Tensor tensor;
    TF_RETURN_IF_ERROR(
        GetInputTensor<Device>(ctx, input.index, input.dtype, &tensor));
    tensors->push_back(std::move(tensor));
  }
  return absl::OkStatus();
}

}  // namespace tf_opt_plugin

#endif  // TF_OPT_PLUGIN_CC_KERNELS_VARIABLE_ACCESS_H_
