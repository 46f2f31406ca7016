"""Stimulus sets for human studies: adversarial examples, their controls and attention checks.

Modules:
    ``imaging``      pure (no Django): 8-bit quantisation, the PNG codec, control images,
                     class-balanced picks, the model seen through 8 bits and batched measuring.
    ``requests``     :class:`~annotate.stimuli.requests.StimulusRequest`, the one typed request
                     from the console form through the job and the command to the service.
    ``sources``      a finished model's network and a split of its data, from the registry.
    ``storage``      images through the storage API, rows, how a run ends, deletion.
    ``adversarial``  the high-confidence targeted set (resumable, chunk by chunk, or one span of
                     it for the job queue).
    ``queueing``     a set fanned out as job-queue chunks under one parent job.
    ``controls``     clean, norm-matched noise and flipped-perturbation control sets.
    ``attention``    clean, unambiguous digits for attention checks.
    ``selectors``    reads for the console and the staff API.
"""
