"""The staff API under ``/api/``: read-only models, stimulus sets, stimuli and studies, plus
results and exports, and the job queue's jobs with cancel and retry (an interface over both
halves, not a domain).

Modules: ``views`` (viewsets), ``serializers`` (output shapes), ``permissions`` (staff only),
``urls`` (routes, the OpenAPI schema and its Swagger UI).
"""
