"""Questions written from a chunk's own structure, for any corpus, with no model.

A 135M model asked to write questions about a passage mostly writes about something else (in a probe on the
Python docs, 3 of 16 of its questions passed the overlap filter), so the default "teacher" reads the text:
instructions ("To rotate a key, open ...") become "How do I rotate a key?", definitions ("A lambda is ...")
become "What is a lambda?", "You can ..." becomes "How can I ...?", and a section heading becomes one of
several phrasings. Each question remembers the sentence it came from, so its answer starts there.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from slm.text.words import has_cjk
from slm.types import Chunk

_PRONOUNS = frozenset(
    "it this that these those there they he she we you i which what who here such each one both all some "
    "other another its their his her our your".split()
)
_WEAK_SUBJECT_WORDS = frozenset("result example default following above below same rest first last".split())
# A definition's subject never starts with these ("If the argument is ...", "Note that x is ...").
_VAGUE = frozenset("this that these those it them they its their above following such".split())
_NOT_A_SUBJECT = frozenset(
    "if when whether while although though because since unless until once as where how why note return "
    "returns also so but and or then only even just now thus hence however otherwise for in on at by with "
    "from of to after before see".split()
)
_TO_DO = re.compile(r"^(?:To|In order to) ([a-z][^,;:]{6,80}), ")
_YOU_CAN = re.compile(r"^You can (?:also )?([a-z][^,;:]{6,80}?)(?:[,;:.]| by | with | using | if | when )")
_USE_TO = re.compile(r"^Use (\S.{1,50}?) to ([a-z][^,;:]{6,80}?)[,;:.]")
_RETURNS = re.compile(r"^(?:The )?([A-Za-z_][\w.]*\(\))(?: method| function)? returns? ")
_DEFINITION = re.compile(r"^((?:An? |The )?[A-Za-z_][\w.()\-]*(?: [\w.()\-]+){0,4}) (is|are) (?!not\b)(.{12,})")
_GERUND = re.compile(r"^[A-Z][a-z]+ing\b")
_NAME_AND_PURPOSE = re.compile(r"^(\S+(?: \S+)?) (?:—|–) \S")


@dataclass(frozen=True)
class RuleQuestion:
    """A question and where its answer starts: the index of the sentence it was written from, or None."""

    text: str
    sentence: int | None
    kind: str  # how it was written: instruction | you-can | definition | heading


def _clause(text: str) -> str:
    return " ".join(text.split()).rstrip(" .")


def _looks_plural(phrase: str) -> bool:
    last = phrase.split()[-1].lower() if phrase.split() else ""
    return last.endswith("s") and not last.endswith(("ss", "us", "is", "ys"))


def from_sentence(sentence: str) -> tuple[str, str] | None:
    """(question, kind) for an instruction, a "You can" sentence or a definition; None for anything else."""
    if m := _TO_DO.match(sentence):
        return f"How do I {_clause(m.group(1))}?", "instruction"
    if m := _YOU_CAN.match(sentence):
        return f"How can I {_clause(m.group(1))}?", "you-can"
    if m := _USE_TO.match(sentence):
        return f"How do I {_clause(m.group(2))}?", "use-to"
    if m := _RETURNS.match(sentence):
        return f"What does {m.group(1)} return?", "returns"
    if m := _DEFINITION.match(sentence):
        subject, verb = m.group(1), m.group(2)
        words = subject.split()
        head = words[-1].lower().strip("().")
        first = words[0].lower()
        if first in _PRONOUNS or first in _NOT_A_SUBJECT or head in _PRONOUNS or head in _WEAK_SUBJECT_WORDS:
            return None
        bare = words[1:] if first in ("a", "an", "the") else words
        if not bare or any(w.lower() in _NOT_A_SUBJECT or w.lower() in _PRONOUNS for w in bare):
            return None
        if first == "the" and len(bare) == 1 and bare[0].isalpha() and bare[0].islower():  # "the file": vague
            return None
        if words[0] in ("A", "An", "The"):
            subject = f"{words[0].lower()} {' '.join(words[1:])}"
        return f"What {verb} {subject}?", "definition"
    return None


# Questions about a topic in the topic's language; English's are the ones training has always used.
_TOPIC_PHRASINGS = {
    "en": ("What does the documentation say about {t}?", "Can you explain {t}?", "How does {t} work?",
           "What should I know about {t}?"),
    "zh": ("关于{t}，文档是怎么说的？", "请解释一下{t}？", "{t}是怎样的？", "关于{t}，我应该知道什么？"),
    "id": ("Apa yang dikatakan dokumentasi tentang {t}?", "Bisakah Anda menjelaskan {t}?",
           "Bagaimana cara kerja {t}?", "Apa yang perlu saya ketahui tentang {t}?"),
}


def topic_phrasings(topic: str, language: str = "en") -> list[str]:
    """Several questions about `topic` in `language` (a Chinese topic gets Chinese ones whatever it says)."""
    language = "zh" if has_cjk(topic) else language if language in _TOPIC_PHRASINGS else "en"
    return [p.format(t=topic) for p in _TOPIC_PHRASINGS[language]]


def from_heading(heading: str, pick: int, language: str = "en") -> str | None:
    """A question about a section heading; `pick` chooses among equally good phrasings. English headings get
    the rules below; a Chinese or Indonesian one its language's topic questions."""
    heading = " ".join(heading.split()).strip(" .:#")
    if not heading or len(heading.split()) > 12 or (has_cjk(heading) and len(heading) > 40):
        return None
    if heading.endswith(("?", "？")):
        return heading
    if has_cjk(heading) or language == "id":
        phrasings = topic_phrasings(heading, language)
        return phrasings[pick % len(phrasings)]
    if heading.lower().startswith("how to "):
        return f"How do I {heading[7:]}?"
    if m := _NAME_AND_PURPOSE.match(heading):  # "contextlib — Utilities for ...": a name, then its purpose
        name = m.group(1)
        return [f"What is {name} for?", f"What does {name} do?", f"What is {name}?"][pick % 3]
    heading = heading.split(": ", 1)[0] if ": " in heading else heading  # "Floating Point: Issues" → the topic
    if _GERUND.match(heading) and heading[1:] == heading[1:].lower():  # "Logging to a file"
        topic = heading[0].lower() + heading[1:]
        return [f"What should I know about {topic}?", f"How do I go about {topic}?"][pick % 2]
    verb = "do" if _looks_plural(heading) else "does"
    be = "are" if _looks_plural(heading) else "is"
    phrasings = [f"What {be} {heading}?", f"How {verb} {heading} work?", f"What should I know about {heading}?",
                 f"What does the documentation say about {heading}?"]
    return phrasings[pick % len(phrasings)]


def rule_questions(chunk: Chunk, sentences: list[str], heading: str) -> list[RuleQuestion]:
    """Every question these rules can write for a chunk, sentence-based ones first, in text order."""
    out: list[RuleQuestion] = []
    for index, sentence in enumerate(sentences):
        found = from_sentence(sentence)
        # "How can I do this?" names nothing: a question that leans on a pronoun cannot pick its passage
        vague = found and any(w.lower().strip("?,.") in _VAGUE for w in found[0].split()[2:])
        if found and not vague and 4 <= len(found[0].split()) <= 20:
            out.append(RuleQuestion(found[0], index, found[1]))
    pick = sum(map(ord, chunk.id))
    question = from_heading(heading, pick, chunk.language) if heading else None
    if question and (len(question.split()) >= 3 or has_cjk(question)):
        out.append(RuleQuestion(question, None, "heading"))
    return out


def choose(candidates: list[RuleQuestion], rng: random.Random, taken: set[str], normalise) -> RuleQuestion | None:
    """One candidate not yet taken: a sentence-based question when there is one (they are specific), else
    the heading question."""
    fresh = [c for c in candidates if normalise(c.text) not in taken]
    if not fresh:
        return None
    specific = [c for c in fresh if c.sentence is not None]
    return rng.choice(specific) if specific else fresh[0]
