// How an optimizer op is declared: its inputs and attrs, built from the
// algorithm's hyperparameter struct (the one list of its scalar inputs, see
// cc/kernels/hyperparams.h), and the shape checks that make graph
// construction fail early with the messages the kernels give at run time.
//
// A tensor-list algorithm's ops (its traits struct, see
// cc/kernels/tensor_list.h) come in two forms with one kernel: ResourceApplyX
// updates one variable (`var: resource`, `grad: T`), ResourceMultiTensorApplyX
// updates N (`var: N * resource`, `grad: N * T`). OptimizerOp builds either:
//
//   TFOPT_REGISTER_OP(op_def::OptimizerOp<Lion>(
//       "ResourceApplyLion", op_def::Form::kOneVariable).Doc(...));
#ifndef TF_OPT_PLUGIN_CC_OPS_OPTIMIZER_OP_DEF_H_
#define TF_OPT_PLUGIN_CC_OPS_OPTIMIZER_OP_DEF_H_

#include <cstdint>
#include <iterator>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "cc/kernels/hyperparams.h"
#include "cc/kernels/tensor_list.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/types.h"

// Registers the op that `builder` (an OpDefBuilderWrapper expression)
// describes, like REGISTER_OP(name).Input(...)... but from a function.
#define TFOPT_REGISTER_OP(builder) \
  TFOPT_REGISTER_OP_UNIQ_HELPER(__COUNTER__, builder)
#define TFOPT_REGISTER_OP_UNIQ_HELPER(ctr, builder) \
  TFOPT_REGISTER_OP_UNIQ(ctr, builder)
#define TFOPT_REGISTER_OP_UNIQ(ctr, builder)                            \
  static ::tensorflow::InitOnStartupMarker const tfopt_register_op##ctr \
      TF_ATTRIBUTE_UNUSED = ::tensorflow::InitOnStartupMarker{} << builder

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

// Whether `a` and `b` can be one shape; *merged gets the more specific of
// the two, dimension by dimension. Unlike InferenceContext::Merge (and
// WithRank, which merges a shape of unknown rank) it records no merge.
// Grappler takes a recorded merge for a fact about the graph and would, for
// a gradient or hyperparameter whose shape was unknown when the graph was
// built, fold the run-time check the Python layer adds before a multi-op
// update (tf_opt_plugin/ops/_inputs.py) into "true", letting the first ops
// write before a later one fails.
inline bool Compatible(InferenceContext* c, ShapeHandle a, ShapeHandle b,
                       ShapeHandle* merged) {
  if (!c->RankKnown(a)) {
    *merged = b;
    return true;
  }
  if (!c->RankKnown(b)) {
    *merged = a;
    return true;
  }
  if (c->Rank(a) != c->Rank(b)) return false;
  std::vector<tensorflow::shape_inference::DimensionHandle> dims;
  for (int i = 0; i < c->Rank(a); ++i) {
    const auto da = c->Dim(a, i), db = c->Dim(b, i);
    if (c->ValueKnown(da) && c->ValueKnown(db) &&
        c->Value(da) != c->Value(db)) {
      return false;
    }
    dims.push_back(c->ValueKnown(da) ? da : db);
  }
  *merged = c->MakeShape(dims);
  return true;
}

// Each named input must be a scalar (where its rank is known; see
// Compatible for why nothing is merged).
inline absl::Status CheckScalars(InferenceContext* c,
                                 const std::vector<const char*>& names) {
  for (const char* name : names) {
    std::vector<ShapeHandle> shapes;
    TF_RETURN_IF_ERROR(c->input(name, &shapes));
    if (c->RankKnown(shapes[0]) && c->Rank(shapes[0]) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("`", name, "` must be a scalar. Received: ", name,
                       ".shape=", c->DebugString(shapes[0])));
    }
  }
  return absl::OkStatus();
}

// `name` must have the shape of `var_name` (*var); returns the merged shape
// in *var.
inline absl::Status MergeWithVar(InferenceContext* c, const std::string& name,
                                 ShapeHandle shape, ShapeHandle* var,
                                 const std::string& var_name = "var") {
  if (Compatible(c, *var, shape, var)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("`", name, "` must have the shape of `", var_name,
                   "`. Received: ", var_name, ".shape=", c->DebugString(*var),
                   ", ", name, ".shape=", c->DebugString(shape)));
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

namespace op_def {

using tensorflow::register_op::OpDefBuilderWrapper;

// One variable (ResourceApplyX) or N of them (ResourceMultiTensorApplyX).
enum class Form { kOneVariable, kTensorList };

// What an algorithm's ops take besides its scalars: slots in op order
// (tensor_list.h), and the per-variable list(bool) attrs of the multi-tensor
// form (empty = all true; a single-variable op declares its own, if any).
struct OptimizerOpSpec {
  std::vector<Slot> slots;
  std::vector<const char*> per_tensor_flags;
};

// Adds the scalar inputs of Hyperparams (hyperparams.h), in its order:
// `name: Tscalar`, or `name: int64` for the step count.
template <template <typename> class Hyperparams>
OpDefBuilderWrapper& AddScalarInputs(OpDefBuilderWrapper& op) {
  Hyperparams<float> hyper{};
  hyper.ForEachScalar([&](const char* name, auto* field) {
    constexpr bool kIsStep = std::is_same_v<decltype(field), const int64_t**>;
    op.Input(absl::StrCat(name, kIsStep ? ": int64" : ": Tscalar"));
  });
  return op;
}

// The doc of ResourceMultiTensorApplyX for an algorithm X whose GPU kernel
// updates the whole list in one launch and whose one per-variable flag is
// apply_weight_decay (AdamW, Lion).
inline std::string OneLaunchTensorListDoc(const char* one_variable_op) {
  return absl::StrCat(
      "\n", one_variable_op,
      " for N variables at once, with the same hyperparameters: on a\n"
      "GPU one kernel launch for the whole list. Variable i gets weight decay "
      "unless\n"
      "apply_weight_decay[i] is false (an empty list means all true). The "
      "results are\n"
      "those of N ",
      one_variable_op, " ops (the same kernel runs both).\n");
}

// The shape function of an op built by OptimizerOp.
absl::Status OptimizerShapeFn(shape_fn::InferenceContext* c, Form form,
                              const OptimizerOpSpec& spec,
                              const std::vector<const char*>& scalar_names);

// The op `name` of `form` of the algorithm Algorithm: inputs var, the
// slots, absmax, rounding_key, the scalars of its Hyperparams, grad; attrs
// T, Tscalar, N (tensor lists), the slot counts, num_absmax,
// num_rounding_keys, state_dtype (how the slots are stored: tensor_list.h's
// StateLayout), the per-tensor flags (tensor lists), use_locking; and its
// shape function.
template <typename Algorithm>
OpDefBuilderWrapper OptimizerOp(const char* name, Form form) {
  const OptimizerOpSpec spec = {
      {std::begin(Algorithm::kSlots), std::end(Algorithm::kSlots)},
      {std::begin(Algorithm::kPerTensorFlags),
       std::end(Algorithm::kPerTensorFlags)}};
  const bool list = form == Form::kTensorList;
  const std::string each = list ? "N * " : "";
  OpDefBuilderWrapper op(name);
  op.Input(absl::StrCat("var: ", each, "resource"));
  for (const Slot& slot : spec.slots) {
    op.Input(absl::StrCat(
        slot.name, ": ",
        slot.count_attr ? absl::StrCat(slot.count_attr, " * ") : each,
        "resource"));
  }
  // 8-bit state: one float32 absmax vector per slot in use and variable.
  op.Input("absmax: num_absmax * resource");
  // Stochastic rounding of bfloat16 variables: none, or one key per variable.
  op.Input("rounding_key: num_rounding_keys * uint32");
  AddScalarInputs<Algorithm::template Hyperparams>(op);
  op.Input(absl::StrCat("grad: ", each, "T"))
      .Attr("T: {half, bfloat16, float, double}")
      .Attr("Tscalar: {float, double}");
  if (list) op.Attr("N: int >= 1");
  for (const Slot& slot : spec.slots) {
    if (slot.count_attr)
      op.Attr(absl::StrCat(slot.count_attr, ": int >= 0 = 0"));
  }
  op.Attr("num_absmax: int >= 0 = 0")
      .Attr("num_rounding_keys: int >= 0 = 0")
      .Attr("state_dtype: {'same', 'float32', 'bfloat16', 'int8'} = 'same'");
  if (list) {
    for (const char* flag : spec.per_tensor_flags) {
      op.Attr(absl::StrCat(flag, ": list(bool) = []"));
    }
  }
  op.Attr("use_locking: bool = true");
  const std::vector<const char*> scalars =
      ScalarInputNames<Algorithm::template Hyperparams>();
  op.SetShapeFn([form, spec, scalars](shape_fn::InferenceContext* c) {
    return OptimizerShapeFn(c, form, spec, scalars);
  });
  return op;
}

}  // namespace op_def
}  // namespace tf_opt_plugin

#endif  // TF_OPT_PLUGIN_CC_OPS_OPTIMIZER_OP_DEF_H_
