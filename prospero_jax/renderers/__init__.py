"""The renderers: a program, what to draw and where to run it → images.

``view`` (:class:`~prospero_jax.renderers.view.View`, :class:`~prospero_jax.renderers.view.Target`,
the pixel grid and the mode rule), ``render`` (the entry point), ``brute`` (the field on
every tile), ``culled`` (intervals and pruned tapes), ``batch`` (many sets of constants),
``shade`` (gradients near the outline), ``sharding`` and ``distributed`` (several devices
and processes), ``reference`` (the oracle's images: ``pj.reference``).
"""
