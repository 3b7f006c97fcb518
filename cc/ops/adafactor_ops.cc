// ResourceApplyAdafactor.
#include "cc/kernels/adafactor_op.h"
#include "cc/ops/optimizer_op_def.h"

namespace tf_opt_plugin {

using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

namespace {

// Checks the accumulator count and shapes when the variable's rank is known.
absl::Status AdafactorShapeFn(InferenceContext* c) {
  TF_RETURN_IF_ERROR(shape_fn::CheckScalarType(c));
  TF_RETURN_IF_ERROR(shape_fn::CheckScalars(
      c, ScalarInputNames<functor::AdafactorHyperparams>()));
  int num_accumulators = 0;
  TF_RETURN_IF_ERROR(c->GetAttr("N", &num_accumulators));
  ShapeHandle var = shape_fn::VariableShape(c, 0);
  std::vector<ShapeHandle> grad;
  TF_RETURN_IF_ERROR(c->input("grad", &grad));
  TF_RETURN_IF_ERROR(shape_fn::MergeWithVar(c, "grad", grad[0], &var));
  if (!c->RankKnown(var)) return absl::OkStatus();
  const int rank = c->Rank(var);
  const int expected = rank >= 2 ? 2 : 1;
  if (num_accumulators != expected) {
    return absl::InvalidArgumentError(absl::StrCat(
        "`accumulators` must hold ", expected,
        expected == 2
            ? " variables (row, column) for a variable of rank >= 2"
            : " variable (shaped like `var`) for a variable of rank < 2",
        ". Received: ", num_accumulators,
        " accumulators for var.shape=", c->DebugString(var)));
  }
  std::vector<ShapeHandle> wanted;
  if (rank < 2) {
    wanted.push_back(var);
  } else {
    ShapeHandle row, col, batch, last;
    TF_RETURN_IF_ERROR(c->Subshape(var, 0, -1, &row));
    TF_RETURN_IF_ERROR(c->Subshape(var, 0, -2, &batch));
    TF_RETURN_IF_ERROR(c->Subshape(var, -1, &last));
    TF_RETURN_IF_ERROR(c->Concatenate(batch, last, &col));
    wanted = {row, col};
  }
  // The kernel's roles (adafactor_op.cc), for the same message.
  static const char* const kRole[2][2] = {
      {"shaped like `var`", ""},
      {"row: var.shape[:-1]", "column: var.shape[:-2] + var.shape[-1:]"}};
  for (int i = 0; i < expected; ++i) {
    ShapeHandle actual = shape_fn::VariableShape(c, 1 + i), merged;
    if (!shape_fn::Compatible(c, actual, wanted[i], &merged)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "`accumulators[", i, "]` must have shape ", c->DebugString(wanted[i]),
          " (", kRole[expected - 1][i],
          "). Received: var.shape=", c->DebugString(var), ", accumulators[", i,
          "].shape=", c->DebugString(actual)));
    }
  }
  return absl::OkStatus();
}

}  // namespace

TFOPT_REGISTER_OP(op_def::AddScalarInputs<functor::AdafactorHyperparams>(
                      op_def::OpDefBuilderWrapper("ResourceApplyAdafactor")
                          .Input("var: resource")
                          .Input("accumulators: N * resource"))
                      .Input("grad: T")
                      .Attr("T: {half, bfloat16, float, double}")
                      .Attr("Tscalar: {float, double}")
                      .Attr("N: int >= 1")
                      .Attr("relative_step: bool = true")
                      .Attr("use_locking: bool = true")
                      .SetShapeFn(AdafactorShapeFn)
                      .Doc(R"doc(
Fused Adafactor (Shazeer & Stern 2018, as Keras implements it), in place.

For a variable of rank >= 2 the last two dims are factored: `accumulators`
is [row (var.shape[:-1]), column (var.shape[:-2] + var.shape[-1:])]; for
rank < 2 it is [v (var.shape)].

  beta_2_t = 1 - step^beta_2_decay;  G = g^2 + epsilon_1
  r <- beta_2_t r + (1 - beta_2_t) mean(G, -1);  c <- ... mean(G, -2)
  u  = g / sqrt(r_i c_j / mean(r))        (unfactored: g / sqrt(v))
  u <- u / max(1, RMS(u) / clip_threshold)
  rho = min(lr, 1/sqrt(step)) if relative_step else lr
  w <- w - max(epsilon_2, RMS(w)) * rho * u
)doc"));

}  // namespace tf_opt_plugin
