#include "cc/ops/shape_fn_helpers.h"
#include "tensorflow/core/framework/op.h"

namespace tf_opt_plugin {

using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

REGISTER_OP("ResourceApplyLamb")
    .Input("var: resource")
    .Input("m: resource")
    .Input("v: resource")
    .Input("lr: Tscalar")
    .Input("beta_1: Tscalar")
    .Input("beta_2: Tscalar")
    .Input("epsilon: Tscalar")
    .Input("weight_decay_rate: Tscalar")
    .Input("step: int64")
    .Input("grad: T")
    .Attr("T: {half, bfloat16, float, double}")
    .Attr("Tscalar: {float, double}")
    .Attr("use_layer_adaptation: bool = true")
    .Attr("use_locking: bool = true")
    .SetShapeFn([](InferenceContext* c) -> absl::Status {
      TF_RETURN_IF_ERROR(shape_fn::CheckScalarType(c));
      TF_RETURN_IF_ERROR(shape_fn::CheckScalars(
          c, {"lr", "beta_1", "beta_2", "epsilon", "weight_decay_rate",
              "step"}));
      ShapeHandle var = shape_fn::VariableShape(c, 0);
      TF_RETURN_IF_ERROR(
          shape_fn::MergeWithVar(c, "m", shape_fn::VariableShape(c, 1), &var));
      TF_RETURN_IF_ERROR(
          shape_fn::MergeWithVar(c, "v", shape_fn::VariableShape(c, 2), &var));
      std::vector<ShapeHandle> grad;
      TF_RETURN_IF_ERROR(c->input("grad", &grad));
      return shape_fn::MergeWithVar(c, "grad", grad[0], &var);
    })
    .Doc(R"doc(
Fused LAMB (You et al. 2019, as TF Model Garden implements it), in place.

  m     <- beta_1 * m + (1 - beta_1) * g
  v     <- beta_2 * v + (1 - beta_2) * g^2
  u      = (m / (1 - beta_1^step)) / (sqrt(v / (1 - beta_2^step)) + epsilon)
           + weight_decay_rate * w
  ratio  = ||w|| / ||u|| over the whole variable if both are > 0 and
           use_layer_adaptation, else 1
  w     <- w - lr * ratio * u

Half types are computed in float32; the norms are accumulated in double.
)doc");

}  // namespace tf_opt_plugin
