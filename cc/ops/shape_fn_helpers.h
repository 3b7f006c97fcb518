// Shape-function checks shared by the optimizer ops: graph construction fails
// early, with the same messages the kernels give at run time.
#ifndef TF_OPT_PLUGIN_CC_OPS_SHAPE_FN_HELPERS_H_
#define TF_OPT_PLUGIN_CC_OPS_SHAPE_FN_HELPERS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/types.h"

namespace tf_opt_plugin {
namespace shape_fn {

using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

// The shape of a resource input's variable, unknown when the handle carries
// none.
inline ShapeHandle VariableShape(InferenceContext* c, int input) {
  const auto* handle_data = c->input_handle_shapes_and_types(input);
  if (handle_data == nullptr || handle_data->empty()) {
    return c->UnknownShape();
  }
  return (*handle_data)[0].shape;
}

// Each named input must be a scalar.
inline absl::Status CheckScalars(InferenceContext* c,
                                 const std::vector<const char*>& names) {
  for (const char* name : names) {
    std::vector<ShapeHandle> shapes;
    TF_RETURN_IF_ERROR(c->input(name, &shapes));
    ShapeHandle unused;
    if (!c->WithRank(shapes[0], 0, &unused).ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("`", name, "` must be a scalar. Received: ", name,
                       ".shape=", c->DebugString(shapes[0])));
    }
  }
  return absl::OkStatus();
}

// `name` (input index `input`) must have the shape of `var`; returns the
// merged shape in *var.
inline absl::Status MergeWithVar(InferenceContext* c, const std::string& name,
                                 ShapeHandle shape, ShapeHandle* var) {
  if (c->Merge(*var, shape, var).ok()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "`", name, "` must have the shape of `var`. Received: var.shape=",
      c->DebugString(*var), ", ", name, ".shape=", c->DebugString(shape)));
}

// Tscalar is the compute type: double for T=double, float for every other T.
inline absl::Status CheckScalarType(InferenceContext* c) {
  tensorflow::DataType t, tscalar;
  TF_RETURN_IF_ERROR(c->GetAttr("T", &t));
  TF_RETURN_IF_ERROR(c->GetAttr("Tscalar", &tscalar));
  const tensorflow::DataType expected =
      t == tensorflow::DT_DOUBLE ? tensorflow::DT_DOUBLE : tensorflow::DT_FLOAT;
  if (tscalar == expected) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "Scalar hyperparameters must be ", tensorflow::DataTypeString(expected),
      " when T=", tensorflow::DataTypeString(t),
      ". Received: Tscalar=", tensorflow::DataTypeString(tscalar)));
}

}  // namespace shape_fn
}  // namespace tf_opt_plugin

#endif  // TF_OPT_PLUGIN_CC_OPS_SHAPE_FN_HELPERS_H_
