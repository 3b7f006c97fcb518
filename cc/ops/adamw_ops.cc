// ResourceApplyAdamW and ResourceMultiTensorApplyAdamW.
#include "cc/kernels/adamw_op.h"
#include "cc/ops/optimizer_op_def.h"

namespace tf_opt_plugin {

using op_def::Form;

TFOPT_REGISTER_OP(op_def::OptimizerOp<AdamW>("ResourceApplyAdamW",
                                             Form::kOneVariable)
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
)doc"));

TFOPT_REGISTER_OP(
    op_def::OptimizerOp<AdamW>("ResourceMultiTensorApplyAdamW",
                               Form::kTensorList)
        .Doc(op_def::OneLaunchTensorListDoc("ResourceApplyAdamW")));

}  // namespace tf_opt_plugin
