"""The IR layer: the op table, :class:`~prospero_jax.ir.program.Program`, the parser, the
passes and the shape builder. Data and NumPy only: nothing here imports JAX.

``ops`` (every opcode's rules, once), ``program`` (the immutable SSA tape), ``parse``
(`.vm` text → Program), ``passes`` (Program → Program rewrites, liveness, registers),
``shapes`` (a builder that emits programs).
"""
