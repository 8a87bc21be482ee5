"""Process-wide machinery, below every renderer: ``xla`` (the one XLA setting), ``cache``
(JAX's persistent compilation cache), ``executables`` (compiled kernels kept on disk, all
state in one ``Store``), ``files`` (files written whole or not at all) and ``memory`` (the
allocator's opt-in reuse of large freed blocks)."""
