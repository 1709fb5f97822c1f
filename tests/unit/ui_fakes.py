"""Fakes for the chat's unit tests: an in-memory chunk library and a scripted streaming answerer."""

from __future__ import annotations

from slm.answering.citations import parse_citations
from slm.errors import SlmError
from slm.answering.prompting import ABSTAIN_TEXT
from slm.types import Answer, Chunk, Hit, Timings

LEAVE_DOC = (
    "Leave policy\n\nEmployees get 25 days of annual leave each year. Requests go through the HR portal.\n\n"
    "Unused days carry over up to 5 days into the next year."
)
SALARY_DOC = "Salary bands\n\nBand 3 salaries range from 50k to 60k. Reviews happen every April."
XSS_DOC = (
    "Evil page\n\n<script>alert('xss')</script> and <img src=x onerror=alert(1)> "
    "and [click me](javascript:alert(2)) and <a href=\"javascript:alert(3)\">link</a> end."
)


def chunks_of_doc(doc_id: str, text: str, title: str, audiences: tuple[str, ...], size: int, overlap: int) -> list[Chunk]:
    """Overlapping chunks with `chunk.text == text[start:end]`, as the real chunker guarantees."""
    out, start, i = [], 0, 0
    while start < len(text):
        end = min(len(text), start + size)
        out.append(
            Chunk(
                id=f"{doc_id}::{i:04d}", doc_id=doc_id, text=text[start:end], start=start, end=end,
                section=(title,), title=title, source=doc_id, audiences=audiences,
            )
        )
        if end == len(text):
            break
        start, i = end - overlap, i + 1
    return out


LEAVE = chunks_of_doc("policies/leave.md", LEAVE_DOC, "Leave policy", ("employees",), 60, 15)
SALARY = chunks_of_doc("hr/salaries.md", SALARY_DOC, "Salary bands", ("hr",), 60, 10)
XSS = chunks_of_doc("evil/page.md", XSS_DOC, "Evil <b>page</b>", ("employees",), 400, 0)
ALL = LEAVE + SALARY + XSS


class FakeLibrary:
    def __init__(self, chunks=ALL):
        self.chunks = {c.id: c for c in chunks}
        self.asked: list[str] = []

    def get_chunks(self, ids):
        self.asked += list(ids)
        return [self.chunks[i] for i in ids if i in self.chunks]

    def chunks_of(self, doc_id):
        return [c for c in self.chunks.values() if c.doc_id == doc_id]


class FakeAnswerer:
    """Streams `text` word by word over the visible chunks that share a word with the question."""

    model_name = "fake-lm"
    adapter = "v7"
    answer_language = "auto"

    def __init__(self, chunks=ALL, text="Employees get 25 days of annual leave [1].", fail: Exception | None = None):
        self.chunks, self.text, self.fail = chunks, text, fail
        self.calls: list[dict] = []

    def stream(self, question, *, history=(), audiences=None, k=None, rerank=None):
        self.calls.append(dict(question=question, history=list(history), audiences=audiences, k=k, rerank=rerank))
        if self.fail is not None:
            raise self.fail
        words = {w.strip("?.,").lower() for w in question.split()}
        hits = tuple(
            Hit(chunk=c, score=1.0, dense=0.8)
            for c in self.chunks
            if (audiences is None or set(c.audiences) & audiences) and words & set(c.text.lower().split())
        )[: k or 4]
        if not hits:
            yield ABSTAIN_TEXT
            yield Answer(question=question, text=ABSTAIN_TEXT, abstained=True, model=self.model_name, adapter=self.adapter)
            return
        for word in self.text.split(" "):
            yield word + " "
        clean, citations = parse_citations(self.text, hits)
        yield Answer(
            question=question, text=clean, citations=citations, passages=hits,
            model=self.model_name, adapter=self.adapter, timings=Timings(total_s=0.5),
        )


class FailingAnswerer(FakeAnswerer):
    def __init__(self):
        super().__init__(fail=SlmError("the model server is down"))


class MemoryFeedback:
    def __init__(self):
        self.rows: list[tuple] = []

    def record(self, answer, rating, *, user=None, comment=""):
        self.rows.append((answer, rating, user, comment))
        return len(self.rows)
