"""Synthetic QA from knowledge-base chunks: a teacher proposes questions, filters keep good ones, a
corpus-agnostic fallback fills gaps, and answers are extractive quotes of the chunk (grounded by construction).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from slm.access.globs import document_matches
from slm.text.words import STOP_WORDS, collapse_spaces, has_cjk, is_cjk, normalise, stop_words, terms, tokens, units
from slm.training.rule_questions import choose, rule_questions, topic_phrasings
from slm.types import Chunk, QAExample

_STOP = stop_words("en") | frozenset(
    """a an the and or but if then else of to in on at by for with from as is are was were be been being it its
    this that these those there here what which who whom whose when where why how do does did done can could
    would should will shall may might must not no yes you your we our they their i me my he she him her them
    than so such also only just more most other some any each all both into about over under between after
    before during out up down off again further once very too own same few nor s t don use used using see
    following example examples section chapter page note""".split()
)
# A sentence ends at . ! ? before a capital, at a CJK stop 。！？ (no space follows), or at a blank line or bullet.
_SENT_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(`])|(?<=[。！？])|\n\s*\n|\n(?=\s*[-*•]\s)")
_STOP_ZH = STOP_WORDS["zh"]
# Indonesian function words plus the words of its question phrasings (rule_questions._TOPIC_PHRASINGS)
_STOP_ID = _STOP | STOP_WORDS["id"] | frozenset("bisakah menjelaskan dikatakan dokumentasi ketahui perlu kerja tentang".split())
_HEADING_NUMBER = re.compile(r"^\s*(?:[0-9]+(?:\.[0-9]+)*\.?|[IVX]+\.)\s+")
_META = re.compile(r"\b(?:the|this|that|given|above|following)\s+(?:passage|text|paragraph|excerpt|document|section)\b", re.I)


@dataclass(frozen=True)
class QuestionPolicy:
    """Knobs of question/answer generation (the defaults fit a weak 135M teacher)."""

    min_words: int = 4
    max_words: int = 30
    min_overlap: float = 0.5  # share of the question's content words found in the chunk
    max_answer_chars: int = 480
    min_answer_chars: int = 40
    # Extractive answers grow sentence by sentence to about this length (up to 4 sentences): long enough to
    # carry the reason or the steps, not just the one matching sentence.
    target_answer_chars: int = 260
    # Answers come only from the part of the chunk the prompt shows (answering.max_passage_chars at serving).
    max_passage_chars: int = 600
    question_context_chars: int = 600  # how much of the chunk the teacher reads to write a question
    # Quote only the text under a chunk's leading section heading (training.strip_heading; docs/training.md).
    strip_heading: bool = True
    min_chunk_chars: int = 200
    teacher_answers: bool = False  # ask the teacher for the answer too (strong endpoint teachers)
    min_answer_support: float = 0.7  # share of a teacher answer's content words found in the chunk


@dataclass
class GenerationStats:
    chunks: int = 0
    teacher_questions: int = 0
    fallback_questions: int = 0
    rule_questions: Counter = field(default_factory=Counter)  # by kind: instruction, definition, heading, ...
    teacher_answers: int = 0
    extractive_answers: int = 0
    rejected: Counter = field(default_factory=Counter)

    def summary(self) -> dict:
        data = asdict(self)
        data["rejected"] = dict(self.rejected)
        data["rule_questions"] = dict(self.rule_questions)
        return data


# ------------------------------------------------------------------ text helpers
def content_words(text: str, language: str = "en") -> list[str]:
    """Latin terms (lower case, stop words out: Indonesian's too for an id chunk) and, for Chinese text, its
    character bigrams."""
    stop = _STOP_ID if language == "id" else _STOP
    latin = [w.lower().rstrip(".") for w in terms(text) if w.lower().rstrip(".") not in stop and len(w) > 1]
    return latin + [u for u in units(text) if is_cjk(u) and not set(u) & _STOP_ZH] if has_cjk(text) else latin


def _word_count(text: str) -> int:
    """Words, with a Chinese character counted as one (Chinese has no spaces to count)."""
    return len(tokens(text)) if has_cjk(text) else len(text.split())


def sentences(text: str) -> list[str]:
    """Prose sentences of a chunk (code lines and fragments dropped), whitespace collapsed."""
    out = []
    for piece in _SENT_SPLIT.split(text):
        sentence = collapse_spaces(piece)
        if _word_count(sentence) < 4:
            continue
        alpha = sum(ch.isalpha() for ch in sentence) / max(len(sentence), 1)
        if alpha < 0.6 or sentence.startswith((">>>", "...", "$ ")):
            continue
        out.append(sentence)
    return out


def shown_body(chunk: Chunk, limit: int, strip_heading: bool = False) -> str:
    """The part of a chunk the model is shown (`limit` chars); with `strip_heading`, without the section
    heading it may start with (an FAQ heading is the question itself)."""
    text = chunk.text[:limit]
    if strip_heading and chunk.section:
        stripped = text.lstrip()
        for heading in (chunk.section[-1].replace("¶", "").strip(), clean_heading(chunk.section[-1])):
            if heading and stripped.startswith(heading):
                return stripped[len(heading):]
    return text


def _heading(chunk: Chunk) -> str:
    return clean_heading(chunk.section[-1]) if chunk.section else clean_heading(chunk.title)


def clean_heading(text: str) -> str:
    text = _HEADING_NUMBER.sub("", text.replace("¶", "")).strip(" :#-")
    return " ".join(text.split())


# ------------------------------------------------------------------ sampling
def sample_chunks(
    chunks: Iterable[Chunk],
    max_chunks: int,
    *,
    seed: int = 0,
    exclude_docs: Sequence[str] = (),
    min_chars: int = 200,
) -> tuple[list[Chunk], int]:
    """Pick up to `max_chunks` chunks spread over documents (round-robin over a seeded shuffle).

    Returns (chunks, excluded count); `exclude_docs` globs match a chunk's doc id or source.
    """
    by_doc: dict[str, list[Chunk]] = {}
    excluded = 0
    for chunk in chunks:
        if document_matches(chunk.doc_id, chunk.source, exclude_docs):
            excluded += 1
            continue
        if len(chunk.text.strip()) < min_chars or not sentences(chunk.text):
            continue
        by_doc.setdefault(chunk.doc_id, []).append(chunk)
    rng = random.Random(seed)
    docs = sorted(by_doc)
    rng.shuffle(docs)
    queues = []
    for doc in docs:
        items = sorted(by_doc[doc], key=lambda c: c.id)
        rng.shuffle(items)
        queues.append(items)
    picked: list[Chunk] = []
    while queues and len(picked) < max_chunks:
        for queue in list(queues):
            if len(picked) >= max_chunks:
                break
            picked.append(queue.pop())
            if not queue:
                queues.remove(queue)
    return picked, excluded


# ------------------------------------------------------------------ questions
# Worked examples for a teacher model, about no corpus in particular, showing the form wanted: one specific,
# self-contained question that the text answers. They did not rescue the packaged 135M model (3 of its 16
# questions still passed the filters in a probe), which is why rules write the questions by default.
_QUESTION_SHOTS = (
    ("Refunds go back to the original payment method within 10 business days after the returned item "
     "reaches our warehouse. Items marked final sale cannot be returned.",
     "How long does a refund take after I return an item?"),
    ("To rotate an API key, open Settings > Security, click Regenerate next to the key and update every "
     "client that uses it. The old key stops working after 24 hours.",
     "How do I rotate an API key?"),
    ("The cache is off by default because stale entries caused hard-to-debug errors when several users "
     "shared one installation. Turn it on with cache=true on single-user installs only.",
     "Why is the cache turned off by default?"),
)


def question_messages(chunk: Chunk, n: int = 1, max_chars: int = 900) -> list[dict[str, str]]:
    ask = "one question" if n == 1 else f"{n} different questions, one per line,"
    messages = [
        {
            "role": "system",
            "content": f"You write {ask} that a user of these documents might ask and that the text answers. "
            "Write a complete, specific question ending with a question mark, in the language of the text. "
            "Reply with the question only.",
        }
    ]
    if n == 1:
        for text, question in _QUESTION_SHOTS:
            messages.append({"role": "user", "content": f"Text:\n{text}\n\nQuestion:"})
            messages.append({"role": "assistant", "content": question})
    messages.append({"role": "user", "content": f"Text:\n{chunk.text[:max_chars].strip()}\n\nQuestion:"})
    return messages


def clean_question(raw: str) -> str | None:
    """First plausible question in a teacher reply, or None."""
    for line in raw.splitlines():
        line = re.sub(r"^\s*(?:[-*•]|\d+[.)]|q(?:uestion)?\s*\d*\s*[:.)-])\s*", "", line.strip(), flags=re.I)
        line = line.strip().strip("\"'`“”")
        if "?" not in line:
            continue
        question = line[: line.index("?") + 1]
        question = _META.sub("the documentation", question)
        question = " ".join(question.split())
        if question:
            return question[0].upper() + question[1:]
    return None


def question_problem(question: str, chunk: Chunk, seen: set[str], policy: QuestionPolicy) -> str | None:
    """Why a proposed question is rejected (a short reason), or None when it is fine."""
    if not question.endswith(("?", "？")):
        return "not a question"
    if _word_count(question) < policy.min_words:
        return "too short"
    if _word_count(question) > policy.max_words:
        return "too long"
    qwords = set(content_words(question, chunk.language))
    if not qwords:
        return "no content words"
    chunk_words = set(content_words(chunk.text, chunk.language))
    overlap = len(qwords & chunk_words) / len(qwords)
    if overlap < policy.min_overlap or len(qwords & chunk_words) < 1:
        return "no overlap with the chunk"
    if normalise(question) in seen:
        return "duplicate"
    return None


def salient_terms(chunk: Chunk, doc_freq: Counter, n_docs: int, k: int = 2) -> list[str]:
    """The chunk's most distinctive words (tf-idf over the sampled chunks), in their original spelling."""
    counts = Counter()
    spelling: dict[str, str] = {}
    for word in terms(chunk.text):
        key = word.lower().rstrip(".")
        if key in _STOP or len(key) < 4:
            continue
        counts[key] += 1
        spelling.setdefault(key, word.rstrip("."))
    scored = sorted(counts, key=lambda w: (-counts[w] * math.log((1 + n_docs) / (1 + doc_freq[w])), w))
    return [spelling[w] for w in scored[:k]]


def fallback_question(chunk: Chunk, seen: set[str], doc_freq: Counter, n_docs: int) -> str:
    """A corpus-agnostic question from the section heading, the title and the chunk's salient terms."""
    heading = clean_heading(chunk.section[-1]) if chunk.section else ""
    title = clean_heading(chunk.title)
    topic = heading or title
    if topic.endswith(("?", "？")) and normalise(topic) not in seen:
        return topic
    if topic and _word_count(topic) <= 12:
        # several phrasings, starting from a stable per-chunk choice, so questions do not all look alike
        phrasings = topic_phrasings(topic, chunk.language)
        first = sum(map(ord, chunk.id)) % len(phrasings)
        variants = phrasings[first:] + phrasings[:first]
        for question in variants:
            if normalise(question) not in seen:
                return question
    terms = salient_terms(chunk, doc_freq, n_docs)
    about = " and ".join(terms) if terms else (sentences(chunk.text) or [chunk.text])[0][:60]
    question = f"What does the documentation say about {about}" + (f" in {topic}?" if topic else "?")
    return question


# ------------------------------------------------------------------ answers
def extractive_answer(question: str, chunk: Chunk, policy: QuestionPolicy, start: int | None = None) -> str | None:
    """The chunk's 1-4 consecutive sentences that best match the question (or that begin at sentence `start`),
    verbatim (whitespace collapsed)."""
    candidates = sentences(shown_body(chunk, policy.max_passage_chars, policy.strip_heading))
    if not candidates:
        return None
    qwords = set(content_words(question))

    def score(i: int) -> float:
        words = set(content_words(candidates[i]))
        return len(words & qwords) / (1 + math.sqrt(len(words))) - 0.01 * i

    best = start if start is not None and 0 <= start < len(candidates) else max(range(len(candidates)), key=score)
    answer = candidates[best]
    nxt = best + 1
    while len(answer) < policy.target_answer_chars and nxt < len(candidates) and nxt - best < 4:
        if len(answer) + 1 + len(candidates[nxt]) > policy.max_answer_chars:
            break
        answer = f"{answer} {candidates[nxt]}"
        nxt += 1
    if len(answer) > policy.max_answer_chars:
        answer = answer[: policy.max_answer_chars].rsplit(" ", 1)[0]
    if len(answer) < policy.min_answer_chars:
        return None
    return answer


def answer_messages(question: str, chunk: Chunk, max_chars: int = 900) -> list[dict[str, str]]:
    return [
        {
            "role": "system",
            "content": "Answer the question in one to three sentences using only the text, quoting its own words, "
            "in the language of the text. Reply with the answer only.",
        },
        {"role": "user", "content": f"Text:\n{chunk.text[:max_chars].strip()}\n\nQuestion: {question}"},
    ]


def supported(answer: str, chunk: Chunk, policy: QuestionPolicy) -> bool:
    words = content_words(answer)
    if not words or len(answer) > policy.max_answer_chars or len(answer) < policy.min_answer_chars // 2:
        return False
    chunk_words = set(content_words(chunk.text[: policy.max_passage_chars]))
    return sum(w in chunk_words for w in words) / len(words) >= policy.min_answer_support


# ------------------------------------------------------------------ the generator
def generate_examples(
    chunks: Sequence[Chunk],
    teacher,  # slm.training.teacher.Teacher | None (None: fallback questions only)
    *,
    policy: QuestionPolicy = QuestionPolicy(),
    questions_per_chunk: int = 1,
    batch_size: int = 8,
    progress: bool = True,
) -> tuple[list[QAExample], GenerationStats]:
    """One or more grounded QA examples per chunk; every example's answer is supported by its chunk."""
    from tqdm.auto import tqdm

    stats = GenerationStats(chunks=len(chunks))
    doc_freq: Counter = Counter()
    for chunk in chunks:
        doc_freq.update(set(w.lower().rstrip(".") for w in terms(chunk.text)))
    seen_q: set[str] = set()
    seen_a: set[str] = set()
    rng = random.Random(0)
    examples: list[QAExample] = []
    bar = tqdm(total=len(chunks), desc="writing questions", unit="chunk", disable=not progress)
    for start in range(0, len(chunks), batch_size):
        group = chunks[start : start + batch_size]
        replies = [""] * len(group)
        if teacher is not None:
            replies = teacher.complete_many(
                [question_messages(c, questions_per_chunk, policy.question_context_chars) for c in group],
                max_new_tokens=32 * questions_per_chunk,
            )
        pending: list[tuple[str, Chunk, int | None]] = []
        for chunk, reply in zip(group, replies):
            lines = reply.splitlines() if questions_per_chunk > 1 else [reply]
            accepted = 0
            for line in lines:
                if accepted >= questions_per_chunk:
                    break
                question = clean_question(line) if line else None
                problem = "no question" if question is None else question_problem(question, chunk, seen_q, policy)
                if teacher is not None and problem:
                    stats.rejected[problem] += 1
                    continue
                if question and not problem:
                    seen_q.add(normalise(question))
                    pending.append((question, chunk, None))
                    stats.teacher_questions += 1
                    accepted += 1
            body = shown_body(chunk, policy.max_passage_chars, policy.strip_heading)
            written = rule_questions(chunk, sentences(body), _heading(chunk))
            while accepted < questions_per_chunk:
                chosen = choose(written, rng, seen_q, normalise)
                if chosen is not None:
                    question, start = chosen.text, chosen.sentence
                    stats.rule_questions[chosen.kind] += 1
                else:
                    question, start = fallback_question(chunk, seen_q, doc_freq, len(chunks)), None
                    if normalise(question) in seen_q:
                        stats.rejected["duplicate fallback"] += 1
                        break
                    stats.fallback_questions += 1
                seen_q.add(normalise(question))
                pending.append((question, chunk, start))
                accepted += 1
        teacher_answers = [None] * len(pending)
        if teacher is not None and policy.teacher_answers and pending:
            teacher_answers = teacher.complete_many(
                [answer_messages(q, c, policy.max_passage_chars) for q, c, _ in pending], max_new_tokens=160
            )
        for (question, chunk, start), proposed in zip(pending, teacher_answers):
            answer = None
            if proposed and supported(" ".join(proposed.split()), chunk, policy):
                answer = " ".join(proposed.split())
                stats.teacher_answers += 1
            else:
                if proposed:
                    stats.rejected["teacher answer unsupported"] += 1
                answer = extractive_answer(question, chunk, policy, start)
                if answer is not None:
                    stats.extractive_answers += 1
            if answer is None:
                stats.rejected["no answer in chunk"] += 1
                continue
            if normalise(answer) in seen_a:
                stats.rejected["duplicate answer"] += 1
                continue
            seen_a.add(normalise(answer))
            examples.append(
                QAExample(
                    question=question,
                    answer=answer,
                    gold_chunk_ids=(chunk.id,),
                    source=chunk.source or chunk.doc_id,
                    anchor=chunk.anchor,
                    id=f"gen-{len(examples):05d}",
                )
            )
        bar.update(len(group))
    bar.close()
    return examples, stats


# ------------------------------------------------------------------ persistence
def example_to_json(example: QAExample) -> dict:
    data = asdict(example)
    data["gold_chunk_ids"] = list(example.gold_chunk_ids)
    data["distractor_chunk_ids"] = list(example.distractor_chunk_ids)
    return data


def write_examples(examples: Sequence[QAExample], path: Path) -> str:
    """Write JSONL (stable key order) and return its sha256, so a run names exactly the data it used."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(example_to_json(e), sort_keys=True, ensure_ascii=False) + "\n" for e in examples)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_examples(path: Path) -> list[QAExample]:
    """QA examples from JSONL: `question` and `answer` required; gold chunk ids, source, anchor optional."""
    from slm.errors import TrainingError

    examples = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TrainingError(f"{path}:{number}: not valid JSON: {exc}") from exc
        if not isinstance(record, dict) or not record.get("question") or not record.get("answer"):
            raise TrainingError(f"{path}:{number}: each line needs 'question' and 'answer'")
        examples.append(
            QAExample(
                question=str(record["question"]),
                answer=str(record["answer"]),
                gold_chunk_ids=tuple(record.get("gold_chunk_ids") or ()),
                distractor_chunk_ids=tuple(record.get("distractor_chunk_ids") or ()),
                source=record.get("source"),
                anchor=record.get("anchor"),
                answerable=bool(record.get("answerable", True)),
                id=record.get("id") or f"user-{number:05d}",
            )
        )
    return examples
