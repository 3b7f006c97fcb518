// ResourceApplyLamb and ResourceMultiTensorApplyLamb.
#include "cc/kernels/lamb_op.h"
#include "cc/ops/optimizer_op_def.h"

namespace tf_opt_plugin {

using op_def::Form;

TFOPT_REGISTER_OP(op_def::OptimizerOp<Lamb>("ResourceApplyLamb",
                                            Form::kOneVariable)
                      .Attr("use_layer_adaptation: bool = true")
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
)doc"));

TFOPT_REGISTER_OP(op_def::OptimizerOp<Lamb>("ResourceMultiTensorApplyLamb",
                                            Form::kTensorList)
                      .Doc(R"doc(
ResourceApplyLamb for N variables at once, with the same hyperparameters and a
trust ratio per variable: on a GPU three launches for the whole list (moments
and per-chunk norms, per-variable ratios, update), no host synchronisation.
Per variable i, apply_weight_decay[i] = false makes weight_decay_rate 0 and
use_layer_adaptation[i] = false fixes its ratio at 1 (empty lists: all true).
The results are those of N ResourceApplyLamb ops (the same kernel runs both).
)doc"));

}  // namespace tf_opt_plugin
