"""The evaluators: everything that computes a program's value, from the IR alone.

``oracle`` (float64 NumPy with liveness GC, the judge), ``unroll`` (the unrolled loop the
oracle and JAX share), ``lower`` (the JAX field and its derivatives), ``interval`` (sound
intervals), ``tape`` (the tape as data and the one branch builder), ``scan`` (the scan
interpreter: values and dual numbers), ``cull`` (the culling kernels: prune and leaf).
"""
