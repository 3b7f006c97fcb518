// Multi-tensor ops: one update of N variables with the same hyperparameters,
// one kernel launch per list on a GPU (after apex's multi_tensor_apply).
#include "cc/ops/shape_fn_helpers.h"
#include "tensorflow/core/framework/op.h"

namespace tf_opt_plugin {

using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

namespace {

// A per-tensor list(bool) attr: empty (all true) or one value per variable.
absl::Status CheckPerTensorAttr(InferenceContext* c, const char* name, int n) {
  std::vector<bool> flags;
  TF_RETURN_IF_ERROR(c->GetAttr(name, &flags));
  if (flags.empty() || static_cast<int>(flags.size()) == n) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "`", name, "` must hold one value per variable (N=", n,
      ") or none (all true). Received ", flags.size(), " values"));
}

// Slot lists (inputs [first + k*n, first + (k+1)*n) for each of `slots`) and
// the gradients shaped like their variables (inputs [0, n)).
absl::Status MergeSlotsAndGrads(InferenceContext* c, int n,
                                const std::vector<const char*>& slots) {
  std::vector<ShapeHandle> grads;
  TF_RETURN_IF_ERROR(c->input("grad", &grads));
  for (int i = 0; i < n; ++i) {
    ShapeHandle var = shape_fn::VariableShape(c, i);
    auto merge = [&](const std::string& name, ShapeHandle shape) -> absl::Status {
      if (c->Merge(var, shape, &var).ok()) return absl::OkStatus();
      return absl::InvalidArgumentError(absl::StrCat(
          "`", name, "` must have the shape of `var[", i, "]`. Received: var[",
          i, "].shape=", c->DebugString(var), ", ", name,
          ".shape=", c->DebugString(shape)));
    };
    for (size_t k = 0; k < slots.size(); ++k) {
      TF_RETURN_IF_ERROR(merge(absl::StrCat(slots[k], "[", i, "]"),
                               shape_fn::VariableShape(c, (k + 1) * n + i)));
    }
    TF_RETURN_IF_ERROR(merge(absl::StrCat("grad[", i, "]"), grads[i]));
  }
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("ResourceMultiTensorApplyAdamW")
    .Input("var: N * resource")
    .Input("m: N * resource")
    .Input("v: N * resource")
    .Input("vhat: num_vhat * resource")
    .Input("lr: Tscalar")
    .Input("beta_1: Tscalar")
    .Input("beta_2: Tscalar")
    .Input("epsilon: Tscalar")
    .Input("weight_decay: Tscalar")
    .Input("step: int64")
    .Input("grad: N * T")
    .Attr("T: {half, bfloat16, float, double}")
    .Attr("Tscalar: {float, double}")
    .Attr("N: int >= 1")
    .Attr("num_vhat: int >= 0 = 0")
    .Attr("apply_weight_decay: list(bool) = []")
    .Attr("use_locking: bool = true")
    .SetShapeFn([](InferenceContext* c) -> absl::Status {
      TF_RETURN_IF_ERROR(shape_fn::CheckScalarType(c));
      int n = 0, num_vhat = 0;
      TF_RETURN_IF_ERROR(c->GetAttr("N", &n));
      TF_RETURN_IF_ERROR(c->GetAttr("num_vhat", &num_vhat));
      if (num_vhat != 0 && num_vhat != n) {
        return absl::InvalidArgumentError(absl::StrCat(
            "`vhat` must hold 0 variables (amsgrad off) or one per variable "
            "(N=", n, "). Received: num_vhat=", num_vhat));
      }
      TF_RETURN_IF_ERROR(CheckPerTensorAttr(c, "apply_weight_decay", n));
      TF_RETURN_IF_ERROR(shape_fn::CheckScalars(
          c, {"lr", "beta_1", "beta_2", "epsilon", "weight_decay", "step"}));
      return MergeSlotsAndGrads(
          c, n,
          num_vhat > 0 ? std::vector<const char*>{"m", "v", "vhat"}
                       : std::vector<const char*>{"m", "v"});
    })
    .Doc(R"doc(
ResourceApplyAdamW for N variables at once, with the same hyperparameters: on a
GPU one kernel launch for the whole list. Variable i gets weight decay unless
apply_weight_decay[i] is false (an empty list means all true). The results are
those of N ResourceApplyAdamW ops (bit for bit on CPU).
)doc");

REGISTER_OP("ResourceMultiTensorApplyLamb")
    .Input("var: N * resource")
    .Input("m: N * resource")
    .Input("v: N * resource")
    .Input("lr: Tscalar")
    .Input("beta_1: Tscalar")
    .Input("beta_2: Tscalar")
    .Input("epsilon: Tscalar")
    .Input("weight_decay_rate: Tscalar")
    .Input("step: int64")
    .Input("grad: N * T")
    .Attr("T: {half, bfloat16, float, double}")
    .Attr("Tscalar: {float, double}")
    .Attr("N: int >= 1")
    .Attr("apply_weight_decay: list(bool) = []")
    .Attr("use_layer_adaptation: list(bool) = []")
    .Attr("use_locking: bool = true")
    .SetShapeFn([](InferenceContext* c) -> absl::Status {
      TF_RETURN_IF_ERROR(shape_fn::CheckScalarType(c));
      int n = 0;
      TF_RETURN_IF_ERROR(c->GetAttr("N", &n));
      TF_RETURN_IF_ERROR(CheckPerTensorAttr(c, "apply_weight_decay", n));
      TF_RETURN_IF_ERROR(CheckPerTensorAttr(c, "use_layer_adaptation", n));
      TF_RETURN_IF_ERROR(shape_fn::CheckScalars(
          c, {"lr", "beta_1", "beta_2", "epsilon", "weight_decay_rate",
              "step"}));
      return MergeSlotsAndGrads(c, n, {"m", "v"});
    })
    .Doc(R"doc(
ResourceApplyLamb for N variables at once, with the same hyperparameters and a
trust ratio per variable: on a GPU three launches for the whole list (moments
and per-chunk norms, per-variable ratios, update), no host synchronisation.
Per variable i, apply_weight_decay[i] = false makes weight_decay_rate 0 and
use_layer_adaptation[i] = false fixes its ratio at 1 (empty lists: all true).
The results are those of N ResourceApplyLamb ops (bit for bit on CPU).
)doc");

}  // namespace tf_opt_plugin
