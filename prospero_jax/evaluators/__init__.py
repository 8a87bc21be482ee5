"""The evaluators: everything that computes a program's value, from the IR alone.

``oracle`` (float64 NumPy with liveness GC, the judge), ``unroll`` (the unrolled loop the
oracle and JAX share), ``lower`` (the JAX field and its derivatives), ``interval`` (sound
intervals), ``tape`` (the tape as data and the one branch builder), ``scan`` (the scan
interpreter: values and dual numbers), and the tape kernels: ``kernel_rows`` (how every
kernel reads, dispatches and stores a row), ``cull`` (the prune kernel),
``leaf_kernels`` (points and column searches), ``dual_kernel`` (values and gradients),
``host_cull`` (the same culling in NumPy).
"""
