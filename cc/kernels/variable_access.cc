#include "cc/kernels/variable_access.h"

#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_def.pb.h"

namespace tf_opt_plugin {

bool IsListInput(const tensorflow::OpKernel& kernel, const char* name) {
  const tensorflow::OpDef* op_def = nullptr;
  if (!tensorflow::OpRegistry::Global()
           ->LookUpOpDef(kernel.def().op(), &op_def)
           .ok()) {
    return false;
  }
  for (const tensorflow::OpDef::ArgDef& arg : op_def->input_arg()) {
    if (arg.name() == name) {
      return !arg.number_attr().empty() || !arg.type_list_attr().empty();
    }
  }
  return false;
}

absl::Status AppendVariableInputs(tensorflow::OpKernelContext* ctx,
                                  const VariableInputSpec& spec,
                                  std::vector<VariableInput>* inputs) {
  int start = 0, stop = 0;
  TF_RETURN_IF_ERROR(ctx->op_kernel().InputRange(spec.name, &start, &stop));
  const bool is_list = IsListInput(ctx->op_kernel(), spec.name);
  for (int i = start; i < stop; ++i) {
    inputs->push_back(
        {i, is_list ? absl::StrCat(spec.name, "[", i - start, "]") : spec.name,
         spec.dtype, spec.dtype_source});
  }
  return absl::OkStatus();
}

absl::Status CheckIsVariableHandle(const tensorflow::ResourceHandle& handle,
                                   const std::string& name) {
  if (handle.hash_code() ==
      tensorflow::TypeIndex::Make<tensorflow::Var>().hash_code()) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "`", name,
      "` must be a resource variable. Received a handle of another kind of "
      "resource: ",
      handle.maybe_type_name(), " `", handle.name(), "`."));
}

absl::Status CheckScalar(const char* name, const tensorflow::Tensor& tensor) {
  if (tensorflow::TensorShapeUtils::IsScalar(tensor.shape())) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("`", name, "` must be a scalar. Received: ", name,
                   ".shape=", tensor.shape().DebugString()));
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

namespace {

// `name` or, in a multi-tensor op, `name[i]`.
std::string InputName(const char* name, bool is_list, int i) {
  return is_list ? absl::StrCat(name, "[", i, "]") : std::string(name);
}

}  // namespace

absl::Status TensorListUpdate::CheckShapes(bool is_list) const {
  const size_t num_slots = num_slot_tensors_ / n_ - 1;
  size_t absmax_index = num_slot_tensors_;
  for (int i = 0; i < n_; ++i) {
    const tensorflow::Tensor& var = locked_.vars[i];
    const std::string var_name = InputName("var", is_list, i);
    auto check = [&](const std::string& name,
                     const tensorflow::Tensor& tensor) -> absl::Status {
      if (tensor.shape() == var.shape()) return absl::OkStatus();
      return absl::InvalidArgumentError(absl::StrCat(
          "`", name, "` must have the shape of `", var_name,
          "`. Received: ", var_name, ".shape=", var.shape().DebugString(), ", ",
          name, ".shape=", tensor.shape().DebugString()));
    };
    for (size_t k = 1; k <= num_slots; ++k) {
      const VariableInput& slot = locked_.variables[k * n_ + i];
      TF_RETURN_IF_ERROR(check(slot.name, locked_.vars[k * n_ + i]));
    }
    TF_RETURN_IF_ERROR(check(InputName("grad", is_list, i), grads_[i]));
  }
  // The absmax vectors, slot by slot, each of N: one float per block.
  for (; absmax_index < locked_.vars.size(); ++absmax_index) {
    const size_t i = (absmax_index - num_slot_tensors_) % n_;
    const tensorflow::Tensor& var = locked_.vars[i];
    const tensorflow::Tensor& absmax = locked_.vars[absmax_index];
    const int64_t blocks = (var.NumElements() + 255) / 256;
    if (absmax.dims() == 1 && absmax.dim_size(0) == blocks) continue;
    const std::string& name = locked_.variables[absmax_index].name;
    return absl::InvalidArgumentError(absl::StrCat(
        "`", name, "` must have shape [", blocks,
        "] (one float32 per block of 256 elements of `",
        InputName("var", is_list, i), "`). Received: ",
        InputName("var", is_list, i), ".shape=", var.shape().DebugString(),
        ", ", name, ".shape=", absmax.shape().DebugString()));
  }
  return absl::OkStatus();
}

absl::Status ParseStateLayout(const std::string& name, StateLayout* layout) {
  static constexpr std::pair<const char*, StateLayout> kLayouts[] = {
      {"same", StateLayout::kSame},
      {"float32", StateLayout::kFloat32},
      {"bfloat16", StateLayout::kBfloat16},
      {"int8", StateLayout::kInt8}};
  for (const auto& [known, value] : kLayouts) {
    if (name == known) {
      *layout = value;
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "`state_dtype` must be \"same\", \"float32\", \"bfloat16\" or "
      "\"int8\". Received: state_dtype=\"",
      name, "\""));
}

TensorListOpKernel::TensorListOpKernel(tensorflow::OpKernelConstruction* ctx)
    : OpKernel(ctx) {
  OP_REQUIRES_OK(ctx, ctx->GetAttr("use_locking", &use_locking_));
  int start = 0, stop = 0;
  OP_REQUIRES_OK(ctx, InputRange("var", &start, &stop));
  num_variables_ = stop - start;
}

absl::Status TensorListOpKernel::GetPerTensorFlags(
    tensorflow::OpKernelConstruction* ctx, const char* name,
    std::vector<bool>* flags) const {
  flags->assign(num_variables_, true);
  const tensorflow::AttrValue* attr =
      ctx->def().attr().count(name) ? &ctx->def().attr().at(name) : nullptr;
  if (attr == nullptr) return absl::OkStatus();
  if (attr->value_case() == tensorflow::AttrValue::kB) {
    flags->assign(num_variables_, attr->b());
    return absl::OkStatus();
  }
  std::vector<bool> values;
  TF_RETURN_IF_ERROR(ctx->GetAttr(name, &values));
  if (values.empty()) return absl::OkStatus();
  if (static_cast<int>(values.size()) != num_variables_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "`", name, "` must hold one value per variable (N=", num_variables_,
        ") or none (all true). Received ", values.size(), " values"));
  }
  *flags = std::move(values);
  return absl::OkStatus();
}

absl::Status TensorListOpKernel::CheckOptionalSlotCount(
    tensorflow::OpKernelConstruction* ctx, const char* count_attr,
    const char* slot, const char* what) const {
  int count = 0;
  TF_RETURN_IF_ERROR(ctx->GetAttr(count_attr, &count));
  if (count == 0 || count == num_variables_) return absl::OkStatus();
  const bool is_list = IsListInput(*this, "var");
  return absl::InvalidArgumentError(absl::StrCat(
      "`", slot, "` must hold 0 variables (", what, " off) or ",
      is_list ? absl::StrCat("one per variable (N=", num_variables_, ")")
              : absl::StrCat("1 (", what, " on)"),
      ". Received: ", count_attr, "=", count));
}

absl::Status CheckStep(int64_t value) {
  if (value >= 1) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "`step` must be >= 1 (the 1-based count of this update). Received: "
      "step=",
      value));
}

}  // namespace tf_opt_plugin
