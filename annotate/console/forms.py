"""The console's forms: generate a stimulus set, create a study (the commands' options, as forms).

Each form builds the typed request the command and the service take (``StimulusRequest``,
``StudySpec``) and checks what the service would refuse before anything runs, so a researcher
sees the problem next to the field instead of in a failed job's log.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms

from annotate.errors import StimulusError, StudyError
from annotate.models import StimulusSet, Study, name_validator
from annotate.stimuli.adversarial import stimulus_set_check
from annotate.stimuli.imaging import CONTROL_KINDS
from annotate.stimuli.requests import ATTACK, StimulusRequest
from annotate.studies.planning import PRESETS, PlanRequest
from annotate.studies.spec import StudySpec
from robustness.registry.models import TrainedModel


class GenerateStimuliForm(forms.Form):
    """``manage.py generate_stimuli``: a model's high-confidence set and its control sets."""

    model = forms.ModelChoiceField(
        queryset=TrainedModel.objects.filter(status=TrainedModel.Status.DONE).order_by("name"),
        to_field_name="name",
        help_text="a trained model from the registry",
    )
    name = forms.CharField(
        required=False,
        max_length=90,
        validators=[name_validator],
        help_text="set name (default: MODEL-hc)",
    )
    split = forms.ChoiceField(choices=[("test", "test"), ("valid", "valid")], initial="test")
    limit = forms.IntegerField(
        required=False, min_value=1, help_text="only the first N images (empty: the whole split)"
    )
    target = forms.ChoiceField(
        choices=[("closest", "closest (second most likely class)"), ("random", "random")],
        initial="closest",
    )
    confidence = forms.CharField(
        initial="original",
        max_length=20,
        help_text="'original' (the clean image's confidence) or a number in (0, 1)",
    )
    controls = forms.MultipleChoiceField(
        choices=[(k, k) for k in CONTROL_KINDS],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="control sets built from the same sources",
    )
    seed = forms.IntegerField(initial=0)
    steps = forms.IntegerField(initial=ATTACK.steps, min_value=1, max_value=10_000)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        try:
            request = StimulusRequest(
                model=data["model"].name,
                name=data["name"] or None,
                split=data["split"],
                limit=data["limit"],
                target=data["target"],
                confidence=data["confidence"],
                seed=data["seed"],
                steps=data["steps"],
                controls=tuple(data["controls"]),
            )
            stimulus_set_check(
                request=request,
                replace_hint="; choose another name (or run generate_stimuli --replace)",
            )
        except StimulusError as exc:
            raise forms.ValidationError(str(exc)) from None
        data["request"] = request
        return data


class CreateStudyForm(forms.Form):
    """``manage.py create_study``: a draft study whose conditions are stimulus sets."""

    name = forms.CharField(max_length=100, validators=[name_validator])
    title = forms.CharField(max_length=200, required=False, help_text="shown to workers")
    sets = forms.ModelMultipleChoiceField(
        queryset=StimulusSet.objects.filter(status=StimulusSet.Status.DONE)
        .exclude(kind=StimulusSet.Kind.ATTENTION)
        .order_by("name"),
        to_field_name="name",
        widget=forms.CheckboxSelectMultiple,
        help_text="one condition each (adversarial sets and their controls)",
    )
    design = forms.ChoiceField(choices=Study.Design.choices, initial=Study.Design.PARTITION)
    size = forms.IntegerField(initial=25, min_value=2, max_value=200, label="Images per assignment")
    attention_checks = forms.IntegerField(initial=2, min_value=0, max_value=20)
    raters = forms.IntegerField(initial=1, min_value=1, max_value=50, label="Raters per image")
    per_worker = forms.IntegerField(
        initial=1, min_value=1, max_value=100, label="Assignments per worker"
    )
    lease_minutes = forms.IntegerField(initial=30, min_value=1, max_value=24 * 60)
    limit = forms.IntegerField(
        required=False, min_value=1, help_text="use only the first N sources"
    )
    attention_set = forms.ModelChoiceField(
        queryset=StimulusSet.objects.filter(
            kind=StimulusSet.Kind.ATTENTION, status=StimulusSet.Status.DONE
        ),
        to_field_name="name",
        required=False,
        help_text="empty: generated from the first condition's model",
    )
    allow_short = forms.BooleanField(
        required=False,
        label="Allow short assignments",
        help_text="no fillers: an assignment may hold one study image fewer than the size",
    )
    seed = forms.IntegerField(initial=0)
    instructions = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False)

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        if name == "new":
            raise forms.ValidationError("'new' is reserved; choose another name")
        if Study.objects.filter(name=name).exists():
            raise forms.ValidationError(f"a study named {name!r} exists already")
        return name

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        try:
            data["spec"] = StudySpec(
                name=data["name"],
                sets=tuple(s.name for s in data["sets"]),
                design=data["design"],
                size=data["size"],
                attention_checks=data["attention_checks"],
                raters=data["raters"],
                assignments_per_worker=data["per_worker"],
                lease_seconds=60 * data["lease_minutes"],
                seed=data["seed"],
                instructions=data["instructions"].strip() or None,
                title=data["title"].strip() or None,
                attention_set=data["attention_set"].name if data["attention_set"] else None,
                limit=data["limit"],
                allow_short=data["allow_short"],
            )
        except StudyError as exc:
            raise forms.ValidationError(str(exc)) from None
        return data


class PlanStudyForm(forms.Form):
    """``manage.py plan_study`` beside "Create study": participants, cost and duration for the
    conditions ticked in the create form."""

    prefix = "plan"
    preset = forms.ChoiceField(
        choices=[("", "—"), *[(k, k) for k in PRESETS]],
        required=False,
        help_text="thesis rates instead of the sets (critic against each other defense)",
    )
    difference = forms.FloatField(
        required=False, min_value=0.1, max_value=99, help_text="smallest % change worth detecting"
    )
    base_rate = forms.FloatField(initial=50, min_value=0.1, max_value=99.9, label="Base % change")
    alpha = forms.FloatField(initial=0.05, min_value=0.001, max_value=0.5)
    power = forms.FloatField(initial=0.8, min_value=0.5, max_value=0.99)
    icc = forms.FloatField(
        initial=0.1, min_value=0, max_value=0.95, required=False, label="Worker ICC (assumed)"
    )
    pilot = forms.ModelChoiceField(
        queryset=Study.objects.order_by("name"),
        to_field_name="name",
        required=False,
        help_text="estimate the ICC, minutes and arrival rate from this study's answers instead",
    )
    minutes = forms.FloatField(required=False, min_value=0.1, help_text="per assignment")
    arrivals = forms.FloatField(required=False, min_value=0.01, label="Participants per hour")
    hourly = forms.DecimalField(initial=Decimal("9.00"), min_value=Decimal("0.01"))
    simulations = forms.IntegerField(initial=100, min_value=50, max_value=1000)

    def request(self, sets: tuple[str, ...], *, answers: int, raters: int) -> PlanRequest:
        """The plan request for the create form's conditions and assignment size."""
        data = self.cleaned_data
        preset = data["preset"] or None
        return PlanRequest(
            preset=preset,
            sets=() if preset else sets,
            difference=data["difference"],
            base_rate=data["base_rate"] or 50.0,
            reference="adversary critic" if preset == "table4.2" else None,
            alpha=data["alpha"],
            power=data["power"],
            answers_per_worker=answers,
            raters=raters,
            icc=None if data["pilot"] else (data["icc"] if data["icc"] is not None else 0.1),
            pilot=data["pilot"].name if data["pilot"] else None,
            minutes=data["minutes"],
            arrivals_per_hour=data["arrivals"],
            hourly=data["hourly"],
            simulations=data["simulations"],
        )
