"""The engine: a cell written as functional stages (:mod:`.cell`), the graph of one step with its forks
(:mod:`.graph`), the chain rule over that graph (:mod:`.derivation`), the primitives that carry their own
derivatives (:mod:`.functions`), the article's notation (:mod:`.notation`), output heads (:mod:`.heads`), the
unrolled timeline (:mod:`.timeline`), the names a cell may not take (:mod:`.reserved`) and the built-in cells
(:mod:`.cells`).  It imports SymPy and nothing else of the package: every other role reads from it.
"""
