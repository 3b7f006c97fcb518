#include "cc/ops/shape_fn_helpers.h"
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"

namespace tf_opt_plugin {

using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

REGISTER_OP("ResourceApplyAdamW")
    .Input("var: resource")
    .Input("m: resource")
    .Input("v: resource")
    .Input("vhat: num_vhat * resource")
    .Input("lr: Tscalar")
    .Input("beta_1: Tscalar")
    .Input("beta_2: Tscalar")
    .Input("epsilon: Tscalar")
    .Input("weight_decay: Tscalar")
    .Input("step: int64")
    .Input("grad: T")
    .Attr("T: {half, bfloat16, float, double}")
    .Attr("Tscalar: {float, double}")
    .Attr("num_vhat: int >= 0 = 0")
    .Attr("use_locking: bool = true")
    .SetShapeFn([](InferenceContext* c) -> absl::Status {
      TF_RETURN_IF_ERROR(shape_fn::CheckScalarType(c));
      int num_vhat = 0;
      TF_RETURN_IF_ERROR(c->GetAttr("num_vhat", &num_vhat));
      if (num_vhat > 1) {
        return absl::InvalidArgumentError(absl::StrCat(
            "`vhat` must hold 0 variables (amsgrad off) or 1 (amsgrad on). "
            "Received: num_vhat=",
            num_vhat));
      }
      TF_RETURN_IF_ERROR(shape_fn::CheckScalars(
          c, {"lr", "beta_1", "beta_2", "epsilon", "weight_decay", "step"}));
      ShapeHandle var = shape_fn::VariableShape(c, 0);
      TF_RETURN_IF_ERROR(
          shape_fn::MergeWithVar(c, "m", shape_fn::VariableShape(c, 1), &var));
      TF_RETURN_IF_ERROR(
          shape_fn::MergeWithVar(c, "v", shape_fn::VariableShape(c, 2), &var));
      if (num_vhat == 1) {
        TF_RETURN_IF_ERROR(shape_fn::MergeWithVar(
            c, "vhat[0]", shape_fn::VariableShape(c, 3), &var));
      }
      std::vector<ShapeHandle> grad;
      TF_RETURN_IF_ERROR(c->input("grad", &grad));
      return shape_fn::MergeWithVar(c, "grad", grad[0], &var);
    })
    .Doc(R"doc(
Fused AdamW (Keras semantics) on resource variables, in place, in one pass.

  w    <- w - lr * weight_decay * w
  m    <- m + (g - m) * (1 - beta_1)
  v    <- v + (g^2 - v) * (1 - beta_2)
  vhat <- max(vhat, v)                         (when vhat is given: amsgrad)
  w    <- w - lr * sqrt(1 - beta_2^step) / (1 - beta_1^step) * m / (sqrt(vhat or v) + epsilon)

With weight_decay = 0 this is Keras Adam. Half types are computed in float32.

var: the variable to update.
m, v: first and second moment slots, shaped like var.
vhat: [] or [max of second moments] for amsgrad.
step: the 1-based count of this update.
grad: the gradient, shaped like var.
)doc");

}  // namespace tf_opt_plugin
