"""Layers of other frameworks over the generated kernels: PyTorch (:mod:`.torch`, ``symbolic_lstm.torch``; on the
JAX backend through :mod:`.torch_on_jax`) and JAX (:mod:`.jax`, ``symbolic_lstm.jax``).  Each imports its framework
only when it is imported itself.
"""
