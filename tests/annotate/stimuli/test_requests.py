"""StimulusRequest: one typed request from the console form through the job to the service."""

from __future__ import annotations

import pytest

from annotate.errors import StimulusError
from annotate.management.commands.generate_stimuli import Command, request_from_options
from annotate.stimuli.requests import ATTACK, StimulusRequest


def parsed(argv: list[str]) -> StimulusRequest:
    parser = Command().create_parser("manage.py", argv[0])
    return request_from_options(vars(parser.parse_args(argv[1:])))


@pytest.mark.parametrize(
    "request_",
    [
        StimulusRequest(model="m"),
        StimulusRequest(
            model="m", name="s.1", split="valid", limit=7, target="random", confidence="0.9",
            seed=3, batch_size=4, steps=9, controls="noise,clean", replace=True,
        ),
    ],
)  # fmt: skip
def test_the_command_line_gives_back_the_same_request(request_):
    assert parsed(request_.argv()) == request_
    assert StimulusRequest.from_dict(request_.to_dict()) == request_


def test_values_are_normalised_once():
    r = StimulusRequest(model="m", confidence="original", controls=["flipped", "clean", "clean"])
    assert (r.confidence, r.controls, r.set_name) == ("original", ("clean", "flipped"), "m-hc")
    assert r.control_names == ("m-hc-clean", "m-hc-flipped")
    assert r.params()["steps"] == ATTACK.steps and r.params()["clip"] == ATTACK.clip


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(split="train"), "split must be one of"),
        (dict(target="far"), "target must be"),
        (dict(limit=0), "limit must be positive"),
        (dict(steps=-1), "steps must be positive"),
        (dict(confidence="1.5"), "confidence"),
        (dict(controls="blur"), "unknown control blur"),
        (dict(name="bad name"), "invalid set name"),
        (dict(model=""), "a model is needed"),
    ],
)
def test_bad_requests_are_one_line_refusals(fields, message):
    with pytest.raises(StimulusError, match=message):
        StimulusRequest(**{"model": "m", **fields})
    with pytest.raises(StimulusError, match="unknown stimulus request field"):
        StimulusRequest.from_dict({"model": "m", "colour": "red"})
