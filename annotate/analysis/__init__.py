"""Results of studies: the statistics of thesis Table 4.2, live progress, charts and exports.

Modules:
    ``stats``      pure textbook statistics (Wilson, cluster bootstrap, Holm, permutation and
                   Fisher tests, Fleiss' κ, Krippendorff's α).
    ``responses``  pure: the responses table and the attention-check exclusion.
    ``report``     pure: per-condition rates with intervals, comparisons, agreement, ``analyse``.
    ``selectors``  a study's answers from the database: export rows and the analysis's arrays.
    ``results``    ``study_results``: selectors → analysis, the one source of every number the
                   console, the staff API and ``study_results`` show (cached).
    ``progress``   live progress: assignments open, leased, submitted, excluded.
    ``exports``    the one CSV format of every export.
    ``plots``      server-rendered SVG charts for the console.
"""
