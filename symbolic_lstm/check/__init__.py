"""The judge of a generated module: a numeric check against a reference that shares no code with
:mod:`symbolic_lstm.codegen`.

* :mod:`.reference` — the cell's stages interpreted directly from the engine's SymPy expressions, no printer;
* :mod:`.complex_step` — derivatives by the complex step, through the same interpreter;
* :mod:`.finite` — the scale at which the cell's own math is finite;
* :mod:`.gradcheck` — the verdict on a module (:func:`~.gradcheck.check_module`).
"""
