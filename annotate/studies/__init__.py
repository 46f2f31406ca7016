"""Studies: their design, creation and life (draft → open → closed).

Modules:
    ``design``     pure (numpy, no Django): partition and full designs, attention checks,
                   class balancing, latin blocks; a seed always gives the same plan.
    ``spec``       :class:`~annotate.studies.spec.StudySpec`, the typed request to create one.
    ``creation``   validate, plan, freeze (config and hash) and write a study in one transaction.
    ``lifecycle``  open, close, and the worker link.
    ``policy``     the pre-declared exclusion rule every result and payment applies.
    ``selectors``  reads by name for commands, the console and the API.
"""
