"""Layers of other frameworks over the generated kernels: PyTorch (:mod:`.torch`, ``symbolic_lstm.torch``; the
tensors handed to a module as its backend says, :mod:`.exchange`) and JAX (:mod:`.jax`, ``symbolic_lstm.jax``).
Each imports its framework only when it is imported itself.
"""
