#include "cc/kernels/variable_access.h"

#include "absl/strings/str_cat.h"

namespace tf_opt_plugin {

absl::Status AppendVariableInputs(tensorflow::OpKernelContext* ctx,
                                  const std::string& name, bool is_list,
                                  std::vector<VariableInput>* inputs) {
  int start = 0, stop = 0;
  TF_RETURN_IF_ERROR(ctx->op_kernel().InputRange(name, &start, &stop));
  for (int i = start; i < stop; ++i) {
    inputs->push_back(
        {i, is_list ? absl::StrCat(name, "[", i - start, "]") : name});
  }
  return absl::OkStatus();
}

absl::Status CheckScalar(const char* name, const tensorflow::Tensor& tensor) {
  if (tensorflow::TensorShapeUtils::IsScalar(tensor.shape())) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("`", name, "` must be a scalar. Received: ", name,
                   ".shape=", tensor.shape().DebugString()));
}

absl::Status GetScalarInputs(tensorflow::OpKernelContext* ctx,
                             const std::vector<const char*>& names,
                             std::vector<const tensorflow::Tensor*>* scalars) {
  scalars->clear();
  for (const char* name : names) {
    const tensorflow::Tensor* tensor = nullptr;
    TF_RETURN_IF_ERROR(ctx->input(name, &tensor));
    TF_RETURN_IF_ERROR(CheckScalar(name, *tensor));
    scalars->push_back(tensor);
  }
  return absl::OkStatus();
}

absl::Status CheckSameShape(const std::string& name,
                            const tensorflow::Tensor& tensor,
                            const tensorflow::Tensor& var) {
  if (tensor.shape() == var.shape()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "`", name, "` must have the shape of `var`. Received: var.shape=",
      var.shape().DebugString(), ", ", name,
      ".shape=", tensor.shape().DebugString()));
}

absl::Status CheckSlotsAndGradMatchVar(const UpdateInputs& update) {
  const tensorflow::Tensor& var = update.vars[0];
  for (size_t i = 1; i < update.vars.size(); ++i) {
    TF_RETURN_IF_ERROR(
        CheckSameShape(update.variables[i].name, update.vars[i], var));
  }
  return CheckSameShape("grad", *update.grad, var);
}

absl::Status CheckMultiSlotsAndGradsMatchVars(
    const UpdateInputs& update, int n,
    const std::vector<const char*>& slot_names) {
  for (int i = 0; i < n; ++i) {
    const tensorflow::Tensor& var = update.vars[i];
    const std::string var_name = absl::StrCat("var[", i, "]");
    auto check = [&](const std::string& name,
                     const tensorflow::Tensor& tensor) -> absl::Status {
      if (tensor.shape() == var.shape()) return absl::OkStatus();
      return absl::InvalidArgumentError(absl::StrCat(
          "`", name, "` must have the shape of `", var_name, "`. Received: ",
          var_name, ".shape=", var.shape().DebugString(), ", ", name,
          ".shape=", tensor.shape().DebugString()));
    };
    for (size_t k = 0; k < slot_names.size(); ++k) {
      TF_RETURN_IF_ERROR(check(absl::StrCat(slot_names[k], "[", i, "]"),
                               update.vars[(k + 1) * n + i]));
    }
    TF_RETURN_IF_ERROR(
        check(absl::StrCat("grad[", i, "]"), *update.grads[i]));
  }
  return absl::OkStatus();
}

absl::Status CheckPerTensorFlags(const char* name,
                                 const std::vector<bool>& flags, int n) {
  if (flags.empty() || static_cast<int>(flags.size()) == n) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "`", name, "` must hold one value per variable (N=", n,
      ") or none (all true). Received ", flags.size(), " values"));
}

absl::Status CheckStep(const tensorflow::Tensor& step) {
  const int64_t value = step.scalar<int64_t>()();
  if (value >= 1) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "`step` must be >= 1 (the 1-based count of this update). Received: "
      "step=",
      value));
}

}  // namespace tf_opt_plugin
