"""The answer parser, where QF-Bench scoring has always imported it from. It lives in
:mod:`qupaint.instruct.parse` beside the formats it inverts, so that the model layer's
constrained generation can check answers with it."""

from qupaint.instruct.parse import (  # noqa: F401
    LABELS,
    PARSE_FORMATS,
    Answer,
    __all__,  # noqa: F401
    label_to_category,
    parse_answer,
    parse_answers,
)
