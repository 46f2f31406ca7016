"""The model registry: Django's layer over the robustness library (app label ``robustness``).

The library beside this package never imports Django; everything that does lives here.

Modules:
    ``models``        ``TrainedModel``: one row per trained (or training) network.
    ``files``         where the registry's files live: run folders, stored checkpoints, the
                      dataset cache (paths from settings, handed to the library).
    ``services``      writes: train (resumable), evaluate, attack, delete.
    ``selectors``     reads of the registry.
    ``reproduction``  a thesis table's grid trained and measured as registry entries.
    ``cli``           what every management command shares: argument types, entity flags, the
                      one mapping of :class:`~robustness.errors.BlindspotError` to a command error.
    ``progress``      tqdm bars fed by the library's progress callbacks.
    ``checks``        system checks of the settings the registry reads.
    ``admin``         the registry in Django's admin.
    ``management/commands``  ``train``, ``models``, ``evaluate``, ``attack``, ``reproduce``.
"""
