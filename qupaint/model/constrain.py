"""Constrained decoding: hold a model's answer to its QMat-Instruct task's format.

Each task's answers are written from templates (:mod:`qupaint.instruct.templates`); here
the same templates become one regular expression per task and box dialect, with ``{n}`` a
count, ``{cat}`` a layer class, ``{material}`` a material name and ``{box}`` boxes in the
dialect. A kept library turns the expression into a token mask at every generation step
(``backend``): xgrammar (default; compiled grammars, a C++ matcher) or lm-format-enforcer
(pure Python). Whatever the model's weights, a constrained answer parses
(:func:`qupaint.instruct.parse.parse_answer` stays strict for everything else).

:func:`task_of_question` recognises the task from the question (the question templates),
so ``qupaint predict`` can constrain free questions too; an unknown question is not
constrained.
"""

from __future__ import annotations

import functools
import re

from qupaint.categories import CATEGORY_IDS, CATEGORY_PHRASES
from qupaint.instruct import templates as T

__all__ = ["BACKENDS", "CONSTRAINED_TASKS", "answer_regex", "logits_processor",
           "task_of_question"]  # fmt: skip

BACKENDS = ("xgrammar", "lmfe")
#: tasks with a held answer format: describe's opening sentence (its layer class) is held,
#: the explanation after it is free; dialogue is free prose
CONSTRAINED_TASKS = ("count", "locate", "verify", "ground", "describe")
MAX_BOXES = 40

_CAT = "(?:" + "|".join(re.escape(p) for p in CATEGORY_PHRASES.values()) + ")"
_LABEL = "(?:" + "|".join(CATEGORY_IDS) + ")"
_MATERIAL = "[A-Za-z0-9-]{1,12}"
_N = "(?:0|[1-9][0-9]?)"
#: a layer count as a description writes it (:func:`qupaint.instruct.context.layers_words`)
_LAYERS = "(?:a monolayer|[1-9][0-9]{0,2} layers)"


def _box(fmt: str, held: tuple[str, ...] | None = None) -> str:
    if held:  # one of the given boxes, written as given
        return "(?:" + "|".join(_lit(b) for b in held) + ")"
    if fmt == "llava":  # normalised, 3 decimals
        v = r"(?:0\.[0-9]{3}|1\.000)"
        return rf"\[{v}, {v}, {v}, {v}\]"
    if fmt == "internvl":  # 0-1000 integers
        v = "(?:1000|[1-9]?[0-9]{1,2})"
        return rf"\[{v}, {v}, {v}, {v}\]"
    v = "(?:0|[1-9][0-9]{0,3})"  # qwen: pixels
    return rf"\[{v}, {v}, {v}, {v}\]"


def _boxes(fmt: str, labelled: bool, many: bool, held: tuple[str, ...] | None = None) -> str:
    if held and many and fmt == "llava":
        return _held_list(held)
    b = _box(fmt, held)
    rep = f"{{0,{MAX_BOXES - 1}}}" if many else "{0}"
    if fmt == "llava":
        one = f"{_LABEL}: {b}" if labelled else b
        return f"{one}(?:; {one}){rep}"
    if fmt == "internvl":
        group = rf"<box>\[{b}(?:, {b}){rep}\]</box>"
        return f"(?:<ref>{_LABEL}</ref>{group})+" if labelled and many else (
            f"<ref>{_LABEL}</ref>{group}" if labelled else group)  # fmt: skip
    item = r'\{"bbox_2d": ' + b + (r', "label": "' + _LABEL + r'"\}' if labelled else r"\}")
    return r"```json\n\[" + item + f"(?:, {item}){rep}" + r"\]\n```"


#: the most lists of held boxes :func:`_held_counted` writes out one by one
MAX_HELD_LISTS = 256


def _held_list(held: tuple[str, ...], n: int | None = None) -> str:
    """Held llava boxes, each labelled, in their given order, each at most once (``n``: exactly
    ``n`` of them, all such lists written out)."""
    one = [f"{_LABEL}: {_lit(h)}" for h in held]
    if n is not None:
        import itertools

        return "(?:" + "|".join("; ".join(one[i] for i in c)
                                for c in itertools.combinations(range(len(one)), n)) + ")"
    return "(?:" + "|".join(one[i] + "".join(f"(?:; {o})?" for o in one[i + 1:])
                            for i in range(len(one))) + ")"  # fmt: skip


def _held_counted(held: tuple[str, ...]) -> list[str] | None:
    """"Found <n>: ..." with exactly n held boxes (llava), one alternative per n; None when
    there would be more than :data:`MAX_HELD_LISTS` lists."""
    from math import comb

    if sum(comb(len(held), n) for n in range(1, len(held) + 1)) > MAX_HELD_LISTS:
        return None
    return [f"Found {n} flake{'s' if n > 1 else ''}: " + _held_list(held, n)
            for n in range(1, len(held) + 1)]  # fmt: skip


def _lit(text: str) -> str:
    """``re.escape`` without escaping spaces (xgrammar's regex reader warns on ``\\ ``)."""
    return re.escape(text).replace("\\ ", " ")


def _fill(t: str, slot) -> str:
    """Template ``t`` as a regular expression: its text literal, each ``{name}`` replaced by
    ``slot(name)``."""
    out, pos = [], 0
    for m in re.finditer(r"\{(\w+)\}", t):
        out.append(_lit(t[pos : m.start()]))
        out.append(slot(m.group(1)))
        pos = m.end()
    out.append(_lit(t[pos:]))
    return "".join(out)


def _template(t: str, fmt: str, box: str) -> str:
    return _fill(t, {"n": _N, "cat": _CAT, "material": _MATERIAL, "box": box,
                     "layers": _LAYERS}.__getitem__)  # fmt: skip


@functools.lru_cache(maxsize=256)
def answer_regex(task: str, fmt: str = "llava", held: tuple[str, ...] | None = None) -> str:
    """The regular expression every answer of ``task`` in dialect ``fmt`` matches.

    ``held`` (a tuple of box coordinate texts in ``fmt``,
    :func:`~qupaint.instruct.formats.box_coords`): the boxes of a locate, verify or ground
    answer are held to these (the physics detector's candidates: the model chooses which and
    their classes, and copies each exactly; a llava list takes them in the order given, each
    once, and "Found <n>: ..." lists n of them). An empty tuple allows no box (locate and verify
    can then only answer "none" /
    "no"). None: any box.

    >>> import re
    >>> r = answer_regex("locate", "llava", ("[0.100, 0.200, 0.300, 0.400]",))
    >>> bool(re.fullmatch(r, "Found 1 flake: Mono: [0.100, 0.200, 0.300, 0.400]"))
    True
    >>> bool(re.fullmatch(r, "Found 1 flake: Mono: [0.100, 0.200, 0.300, 0.500]"))
    False
    >>> none = "There are no flakes in this image."
    >>> bool(re.fullmatch(answer_regex("locate", "llava", ()), none))
    True
    """
    if task not in CONSTRAINED_TASKS:
        raise ValueError(f"task must be one of {CONSTRAINED_TASKS}; got {task!r}")
    if held is not None:
        held = tuple(held)
        if not held and task == "ground":
            held = None  # a grounding answer is one box: without candidates, any box
    if task == "count":
        alts = [_template(t, fmt, "") for t in T.COUNT_A]
        alts.append(rf"There is 1 flake in the image\.|There are {_N} flakes in the image\.")
    elif task == "locate":
        alts = []
        if held is None or held:
            many = _boxes(fmt, True, True, held)
            counted = _held_counted(held) if held and fmt == "llava" else None
            if counted:  # a held list says how many it lists, and lists that many
                alts = [_template(t, fmt, many) for t in T.LOCATE_A if "{n}" not in t]
                alts += counted
            else:
                alts = [_template(t, fmt, many) for t in T.LOCATE_A]
                alts += [rf"Found 1 flake: {many}", rf"Found {_N} flakes: {many}"]
        alts += [_template(t, fmt, "") for t in T.LOCATE_NONE_A]
        alts += [r"There are no flakes in this image\."]
    elif task == "verify":
        alts = []
        if held is None or held:
            one = _boxes(fmt, True, False, held)
            alts = [_template(t, fmt, one) for t in T.VERIFY_YES_A]
        alts += [_template(t, fmt, "") for t in T.VERIFY_NO_A]
    elif task == "describe":  # "This is a monolayer graphene flake (a monolayer). ..."
        alts = [_template(T.DESCRIBE_A, fmt, "") + r"(?: [^\n]*)?"]
    else:  # ground: one bare box
        alts = [_boxes(fmt, False, False, held)]
    return "(?:" + "|".join(alts) + ")"


def _question_regex(t: str) -> str:
    return _fill(t, lambda _: ".{1,200}?")


@functools.lru_cache(maxsize=1)
def _question_patterns() -> list[tuple[re.Pattern, str]]:
    groups = {"count": T.COUNT_Q + T.COUNT_ALL_Q, "locate": T.DETECT_Q + T.LOCATE_Q,
              "verify": T.VERIFY_Q, "ground": T.GROUND_Q, "describe": T.DESCRIBE_Q}  # fmt: skip
    return [(re.compile(r"\s*(?:<image>\s*)?" + _question_regex(t) + r"\s*$", re.S), task)
            for task, ts in groups.items() for t in ts]  # fmt: skip


def task_of_question(question: str) -> str | None:
    """The QMat-Instruct task a question asks (one of :data:`CONSTRAINED_TASKS`), or None."""
    for pat, task in _question_patterns():
        if pat.match(question):
            return task
    return None


# -- backends -----------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _xgr_compiler(tokenizer, vocab_size: int):
    import xgrammar as xgr

    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
    return xgr.GrammarCompiler(info, max_threads=1)


@functools.lru_cache(maxsize=64)
def _xgr_grammar(tokenizer, vocab_size: int, regex: str):
    return _xgr_compiler(tokenizer, vocab_size).compile_regex(regex)


@functools.lru_cache(maxsize=4)
def _lmfe_data(tokenizer, vocab_size: int):
    """lm-format-enforcer's view of the tokenizer. Its own transformers integration does not
    import under transformers 5 (it reads ``transformers.tokenization_utils``), so the
    same data is built here on its core classes."""
    from lmformatenforcer.tokenenforcer import TokenEnforcerTokenizerData

    zero = tokenizer.encode("0")[-1]
    special = set(tokenizer.all_special_ids)
    regular = []
    for t in range(min(vocab_size, len(tokenizer))):
        if t in special:
            continue
        after_zero = tokenizer.decode([zero, t])[1:]
        regular.append((t, after_zero, len(after_zero) > len(tokenizer.decode([t]))))

    def decode(tokens):
        return tokenizer.decode(tokens).rstrip("\ufffd")

    return TokenEnforcerTokenizerData(regular, decode, tokenizer.eos_token_id, False, vocab_size)


def logits_processor(tokenizer, vocab_size: int, regexes: list[str | None], prompt_len: int,
                     backend: str = "xgrammar", eos_token_id: int | None = None):  # fmt: skip
    """A ``transformers`` logits processor that holds row ``i`` of a batch to ``regexes[i]``
    (None: free), for one ``generate`` call; ``prompt_len`` is the (left-padded) prompt
    length, ``eos_token_id`` the token that ends an answer."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
    if backend == "xgrammar":
        return _XgrProcessor(tokenizer, vocab_size, regexes, eos_token_id)
    return _LmfeProcessor(tokenizer, regexes, prompt_len, vocab_size)


def _base():
    from transformers import LogitsProcessor

    return LogitsProcessor


class _XgrProcessor(_base()):
    """xgrammar's matcher per row; rows without a grammar pass through."""

    def __init__(self, tokenizer, vocab_size, regexes, eos_token_id):
        import xgrammar as xgr

        self.xgr = xgr
        self.vocab_size = vocab_size
        self.matchers = [None if r is None else xgr.GrammarMatcher(
            _xgr_grammar(tokenizer, vocab_size, r),
            override_stop_tokens=[eos_token_id] if eos_token_id is not None else None)
            for r in regexes]  # fmt: skip
        self.bitmask = xgr.allocate_token_bitmask(len(regexes), vocab_size)
        self.first = True

    def __call__(self, input_ids, scores):
        rows = [i for i, m in enumerate(self.matchers) if m is not None]
        if not self.first:
            for i in rows:
                m = self.matchers[i]
                if not m.is_terminated():
                    m.accept_token(int(input_ids[i, -1]))
        self.first = False
        if not rows:
            return scores
        live = [i for i in rows if not self.matchers[i].is_terminated()]
        for i in live:
            self.matchers[i].fill_next_token_bitmask(self.bitmask, i)
        if live:
            # the model's vocabulary may be padded beyond the tokenizer's: a slice fits
            view = scores[:, : self.vocab_size]
            self.xgr.apply_token_bitmask_inplace(view, self.bitmask.to(scores.device),
                                                 indices=live)  # fmt: skip
        return scores


class _LmfeProcessor(_base()):
    """lm-format-enforcer's token enforcer per row."""

    def __init__(self, tokenizer, regexes, prompt_len, vocab_size):
        from lmformatenforcer import RegexParser, TokenEnforcer

        data = _lmfe_data(tokenizer, vocab_size)
        self.enforcers = [None if r is None else TokenEnforcer(data, RegexParser(r))
                          for r in regexes]  # fmt: skip
        self.prompt_len = prompt_len
        self.vocab_size = vocab_size

    def __call__(self, input_ids, scores):
        import torch

        for i, enf in enumerate(self.enforcers):
            if enf is None:
                continue
            allowed = enf.get_allowed_tokens(input_ids[i, self.prompt_len :].tolist())
            allowed = getattr(allowed, "allowed_tokens", allowed)
            mask = torch.full((scores.shape[1],), float("-inf"), dtype=scores.dtype)
            ok = [t for t in allowed if t < scores.shape[1]]
            mask[ok] = 0.0
            scores[i] += mask.to(scores.device)
        return scores
