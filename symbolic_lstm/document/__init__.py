"""Documents of a derivation: LaTeX (:mod:`.printer_latex`, :mod:`.latex_layout`, :mod:`.emit_latex`), the graph
of stages in Graphviz (:mod:`.emit_dot`) and the article's notebook (:mod:`.notebook`).  Nothing here renders a
kernel, so no document change makes a generated module stale.
"""
