"""What every other role stands on, and nothing of theirs: where the templates and generated modules live
(:mod:`.paths`), files written atomically (:mod:`.files`), code read once and verified on its descriptors
(:mod:`.trust`) and run from exactly the verified bytes (:mod:`.run_code`), the BLAS threads a kernel's size asks
(:mod:`.threads`) and the package's version (:mod:`.version`).  It imports nothing else of the package.
"""
