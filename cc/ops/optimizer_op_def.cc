#include "cc/ops/optimizer_op_def.h"

namespace tf_opt_plugin {
namespace op_def {

using shape_fn::InferenceContext;
using shape_fn::ShapeHandle;

absl::Status OptimizerShapeFn(InferenceContext* c, Form form,
                              const OptimizerOpSpec& spec,
                              const std::vector<const char*>& scalar_names) {
  TF_RETURN_IF_ERROR(shape_fn::CheckScalarType(c));
  const bool list = form == Form::kTensorList;
  int n = 1;
  if (list) TF_RETURN_IF_ERROR(c->GetAttr("N", &n));
  // The number of variables each slot input holds.
  std::vector<int> counts;
  for (const Slot& slot : spec.slots) {
    int count = n;
    if (slot.count_attr) {
      TF_RETURN_IF_ERROR(c->GetAttr(slot.count_attr, &count));
      if (count != 0 && count != n) {
        return absl::InvalidArgumentError(
            absl::StrCat("`", slot.name, "` must hold 0 variables (",
                         slot.feature, " off) or ",
                         list ? absl::StrCat("one per variable (N=", n, ")")
                              : absl::StrCat("1 (", slot.feature, " on)"),
                         ". Received: ", slot.count_attr, "=", count));
      }
    }
    counts.push_back(count);
  }
  if (list) {
    for (const char* flag : spec.per_tensor_flags) {
      std::vector<bool> values;
      TF_RETURN_IF_ERROR(c->GetAttr(flag, &values));
      if (!values.empty() && static_cast<int>(values.size()) != n) {
        return absl::InvalidArgumentError(absl::StrCat(
            "`", flag, "` must hold one value per variable (N=", n,
            ") or none (all true). Received ", values.size(), " values"));
      }
    }
  }
  TF_RETURN_IF_ERROR(shape_fn::CheckScalars(c, scalar_names));

  std::vector<ShapeHandle> grads;
  TF_RETURN_IF_ERROR(c->input("grad", &grads));
  auto indexed = [](const char* name, bool is_list, int i) {
    return is_list ? absl::StrCat(name, "[", i, "]") : std::string(name);
  };
  for (int i = 0; i < n; ++i) {
    const std::string var_name = indexed("var", list, i);
    ShapeHandle var = shape_fn::VariableShape(c, i);
    int first = n;  // the input index of this slot's first variable
    for (size_t k = 0; k < spec.slots.size(); ++k) {
      const Slot& slot = spec.slots[k];
      if (counts[k] > 0) {
        TF_RETURN_IF_ERROR(shape_fn::MergeWithVar(
            c, indexed(slot.name, list || slot.count_attr, i),
            shape_fn::VariableShape(c, first + i), &var, var_name));
      }
      first += counts[k];
    }
    TF_RETURN_IF_ERROR(shape_fn::MergeWithVar(c, indexed("grad", list, i),
                                              grads[i], &var, var_name));
  }
  return absl::OkStatus();
}

}  // namespace op_def
}  // namespace tf_opt_plugin
