"""Process-wide machinery, below every renderer: ``xla`` (the one XLA setting), ``cache``
(JAX's persistent compilation cache), ``executables`` (compiled kernels kept on disk, all
state in one ``Store``) and ``files`` (files written whole or not at all)."""
