// ResourceApplyLion and ResourceMultiTensorApplyLion.
#include "cc/kernels/lion_op.h"
#include "cc/ops/optimizer_op_def.h"

namespace tf_opt_plugin {

using op_def::Form;

TFOPT_REGISTER_OP(op_def::OptimizerOp<Lion>("ResourceApplyLion",
                                            Form::kOneVariable)
                      .Doc(R"doc(
Fused Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms",
with Keras's decoupled weight decay) on resource variables, in place, in one
pass over memory (20 bytes per float32 parameter).

  w <- w - w * weight_decay * lr
  w <- w - lr * sign(beta_1 * m + (1 - beta_1) * g)
  m <- beta_2 * m + (1 - beta_2) * g

Half types are computed in float32. Lion takes no step count.

var: the variable to update.
m: the momentum slot, shaped like var.
grad: the gradient, shaped like var.
)doc"));

TFOPT_REGISTER_OP(
    op_def::OptimizerOp<Lion>("ResourceMultiTensorApplyLion", Form::kTensorList)
        .Doc(op_def::OneLaunchTensorListDoc("ResourceApplyLion")));

}  // namespace tf_opt_plugin
