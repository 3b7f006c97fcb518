"""CPU: one multi-tensor op vs one fused op per variable, for AdamW and LAMB.

    python tools/bench_multi_tensor_cpu.py

Times a tf.function step over three variable sets (a 6-tensor MLP, 35- and 67-tensor transformer
encoders), interleaving the two variants, and prints the median time of each (docs/gpu.md
records a run). Uses the installed tf_opt_plugin, or the library named by TF_OPT_PLUGIN_LIBRARY.
"""

import time

import numpy as np
import tensorflow as tf

import tf_opt_plugin.ops as ops
def shapes_small(h=128, layers=2, vocab=1000, inter=512):
  s=[(vocab,h),(h,),(h,)]
  for _ in range(layers):
    s += [(h,h),(h,)]*4 + [(h,),(h,),(h,inter),(inter,),(inter,h),(h,),(h,),(h,)]
  return s
def shapes_mlp(): return [(64,32),(32,),(32,32),(32,),(32,10),(10,)]
def bench(shapes, algo, reps=200):
  ws=[tf.Variable(tf.random.normal(s)) for s in shapes]
  ms=[tf.Variable(tf.zeros(s)) for s in shapes]; vs=[tf.Variable(tf.zeros(s)) for s in shapes]
  gs=[tf.random.normal(s)*0.01 for s in shapes]
  hp=dict(learning_rate=1e-3,beta_1=0.9,beta_2=0.999,epsilon=1e-6)
  if algo=="adamw":
    @tf.function
    def multi(t): ops.multi_tensor_apply_adamw(ws,ms,vs,gs,weight_decay=0.01,step=t,**hp)
    @tf.function
    def per(t):
      for w,m,v,g in zip(ws,ms,vs,gs): ops.resource_apply_adamw(w,m,v,g,weight_decay=0.01,step=t,**hp)
  else:
    @tf.function
    def multi(t): ops.multi_tensor_apply_lamb(ws,ms,vs,gs,weight_decay_rate=0.01,step=t,**hp)
    @tf.function
    def per(t):
      for w,m,v,g in zip(ws,ms,vs,gs): ops.resource_apply_lamb(w,m,v,g,weight_decay_rate=0.01,step=t,**hp)
  t=tf.constant(1,tf.int64)
  out={}
  for name,f in (("multi",multi),("per",per)):
    for _ in range(10): f(t)
  res={"multi":[],"per":[]}
  for _ in range(reps):
    for name,f in (("multi",multi),("per",per)):
      s=time.perf_counter(); f(t); res[name].append(time.perf_counter()-s)
  n=sum(int(np.prod(s)) for s in shapes)
  m,p=np.median(res["multi"])*1e6,np.median(res["per"])*1e6
  print(f"{algo:6s} {len(shapes):4d} tensors {n:9d} params: multi {m:9.1f} us  per-variable {p:9.1f} us  ratio {p/m:5.2f}x")
for algo in ("adamw","lamb"):
  bench(shapes_mlp(), algo)
  bench(shapes_small(), algo)
  bench(shapes_small(h=256,layers=4,vocab=8000,inter=1024), algo, reps=60)
