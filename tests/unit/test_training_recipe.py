"""`slm train` end to end on a tiny model and a fake knowledge base (faked at the KB boundary)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from slm.access.labels import can_see
from slm.config import Settings
from slm.errors import EvalLeakError, TrainingError
from slm.adapters.registry import Registry
from slm.training.recipe import TrainOptions, run_training
from slm.types import Chunk, Hit

DOCS = {
    "guide/refunds.md": ("Refunds", "Refunds are paid within 30 days of the request. A receipt is required for every refund. "
                         "Store credit is offered when the receipt is missing.", ("employees",)),
    "guide/leave.md": ("Annual leave", "Employees receive 25 days of annual leave each year. Requests go through the "
                       "HR portal two weeks ahead. Five unused days may be carried over.", ("employees",)),
    "guide/travel.md": ("Travel", "Travel is booked through the travel desk at least two weeks ahead. Economy class is "
                        "the default for flights under six hours. Receipts are needed for expenses.", ("employees",)),
    "hr/salaries.md": ("Salaries", "Salary bands are reviewed every April by the compensation committee. Managers "
                       "receive the new bands in May and discuss them with each employee.", ("hr",)),
    "faq/general.md": ("FAQ", "How do I get a refund? Ask the help desk, who will process the refund within 30 days "
                       "and send an email confirmation once it is paid.", ("employees",)),
}


class FakeRetriever:
    def __init__(self, chunks):
        self.chunks = chunks

    def retrieve(self, query, k=5, *, audiences=None, **_):
        words = set(query.lower().split())
        visible = [c for c in self.chunks if can_see(c.audiences, audiences)]
        ranked = sorted(visible, key=lambda c: (-len(words & set(c.text.lower().split())), c.id))
        return [Hit(chunk=c, score=1.0, dense=0.5) for c in ranked[:k]]


class FakeKB:
    def __init__(self, path: Path):
        self.path = path
        self.chunks = []
        for doc, (title, text, audiences) in DOCS.items():
            for i, part in enumerate(text.split(". ")[:2]):
                body = (part + ". ") * 5
                self.chunks.append(Chunk(id=f"{doc}::{i:04d}", doc_id=doc, text=body, start=i * 1000,
                                         end=i * 1000 + len(body), section=(title,), title=title, source=doc,
                                         audiences=audiences))

    def all_chunks(self, audiences=None):
        return iter([c for c in self.chunks if can_see(c.audiences, audiences)])

    def retriever(self):
        return FakeRetriever(self.chunks)


@pytest.fixture()
def settings(tiny_lm_dir, tmp_path):
    torch.set_num_threads(1)
    s = Settings(kb=tmp_path / "kb")
    s.training.base = str(tiny_lm_dir)
    s.training.max_chunks = 20
    s.training.batch_size = 2
    s.training.distractors = 2
    s.training.abstain_share = 0.25
    s.training.save_every = 2
    s.training.teacher = "none"  # questions by rules: no model writes them
    return s


def test_train_registers_an_adapter_with_audiences_hash_and_report(settings, tmp_path):
    from peft import PeftModel

    from slm.generation.loading import load_causal_lm

    kb = FakeKB(tmp_path / "kb")
    eval_file = tmp_path / "eval.jsonl"
    phrasings = ["What does the documentation say about Refunds?", "Can you explain Refunds?",
                 "How does Refunds work?", "What should I know about Refunds?"]
    eval_file.write_text("".join(json.dumps({"question": q}) + "\n" for q in phrasings))
    settings.training.epochs = 3
    report = run_training(
        settings,
        TrainOptions(audiences=frozenset({"employees"}), exclude_docs=("faq/*",), eval_qa=(eval_file,),
                     max_steps=3, progress=False),
        kb=kb, log=lambda m: None,
    )
    assert report.version == "v1" and not report.promoted and report.steps == 3
    assert report.tokens > 0 and report.tokens_per_second > 0 and report.peak_memory_mb > 0
    assert report.audiences == ("employees",)  # hr/ was not visible to this audience
    assert report.generation["leak_dropped"] >= 1  # fallback questions equal to eval questions
    assert any("excluded 1 chunk" in n for n in report.notes), report.notes
    run = report.run_dir
    data = [json.loads(line) for line in (run / "data.jsonl").read_text().splitlines()]
    assert data and all(not d["gold_chunk_ids"][0].startswith(("hr/", "faq/")) for d in data)
    raft = [json.loads(line) for line in (run / "raft.jsonl").read_text().splitlines()]
    assert all(not p.startswith(("hr/", "faq/")) for r in raft for p in r["passages"])
    assert any(r["target"] == "I don't know from the documents." for r in raft)
    entry = Registry(tmp_path / "kb" / "adapters").get("v1")
    assert entry.data_hash == report.data_hash and entry.base == settings.training.base
    assert entry.info.report["steps"] == 3 and entry.info.exclude_docs == ("faq/*",)
    base, _ = load_causal_lm(settings.training.base)
    PeftModel.from_pretrained(base, str(entry.path))  # plain peft loads the registered adapter


def test_user_data_with_eval_questions_is_refused(settings, tmp_path):
    kb = FakeKB(tmp_path / "kb")
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text(json.dumps({"question": "How long do refunds take?"}) + "\n")
    data = tmp_path / "mine.jsonl"
    data.write_text(json.dumps({"question": "How long do refunds take?", "answer": "30 days."}) + "\n"
                    + json.dumps({"question": "Where do I book travel?", "answer": "The travel desk."}) + "\n")
    with pytest.raises(EvalLeakError, match="1 training question"):
        run_training(settings, TrainOptions(data_file=data, eval_qa=(eval_file,), progress=False), kb=kb,
                     log=lambda m: None)


def test_promote_flag_serves_the_new_version(settings, tmp_path):
    kb = FakeKB(tmp_path / "kb")
    report = run_training(settings, TrainOptions(max_steps=1, promote=True, progress=False), kb=kb,
                          log=lambda m: None)
    assert report.promoted and Registry(tmp_path / "kb" / "adapters").current().version == report.version


def test_prepare_only_then_loop_elsewhere_then_resume_registers(settings, tmp_path):
    from slm.training.prepared import train_prepared

    kb = FakeKB(tmp_path / "kb")
    prepared = run_training(settings, TrainOptions(prepare_only=True, progress=False), kb=kb,
                            log=lambda m: None)
    assert prepared.version == "" and prepared.steps == 0 and prepared.examples > 0
    assert not (tmp_path / "kb" / "adapters").exists()  # nothing registered yet
    loop = train_prepared(prepared.run_dir, progress=False)  # what the GPU box runs
    assert loop.steps > 0
    report = run_training(settings, TrainOptions(resume=True, progress=False), kb=kb,
                          log=lambda m: None)
    assert report.version == "v1" and report.steps == loop.steps and report.run_dir == prepared.run_dir
    assert report.loss_first == loop.losses[0] and report.data_hash == prepared.data_hash


def test_fast_speed_trains_with_packing_and_answer_only_logits(settings, tmp_path):
    import torch

    settings.training.speed = "fast"
    settings.training.epochs = 1
    report = run_training(settings, TrainOptions(max_steps=2, progress=False),
                          kb=FakeKB(tmp_path / "kb"), log=lambda m: None)
    assert report.steps == 2 and report.tokens > 0
    loop = Registry(tmp_path / "kb" / "adapters").get(report.version).info.training
    assert loop["packing"] is True and loop["answer_only_logits"] is True
    assert loop["compile"] is torch.cuda.is_available()


def test_unknown_speed_is_a_clear_error(settings, tmp_path):
    settings.training.speed = "turbo"
    with pytest.raises(TrainingError, match="training.speed"):
        run_training(settings, TrainOptions(max_steps=1, progress=False), kb=FakeKB(tmp_path / "kb"), log=lambda m: None)


def test_gradient_checkpointing_is_off_on_a_cpu_unless_asked_for():
    import torch

    from slm.errors import TrainingError
    from slm.training.loop_settings import checkpointing_field as _checkpointing_field

    assert _checkpointing_field("on") == {"gradient_checkpointing": True}
    assert _checkpointing_field("off") == {"gradient_checkpointing": False}
    assert _checkpointing_field("auto") == ({} if torch.cuda.is_available() else {"gradient_checkpointing": False})
    with pytest.raises(TrainingError, match="auto, on or off"):
        _checkpointing_field("sometimes")


def test_gpus_option_trains_in_two_processes_and_registers(settings, tmp_path, monkeypatch):
    # On this CPU the 2 processes are gloo ranks; on a GPU machine, one per GPU (NCCL).
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    settings.training.distributed = "fsdp"
    report = run_training(settings, TrainOptions(gpus=2, max_steps=2, progress=False),
                          kb=FakeKB(tmp_path / "kb"), log=lambda m: None)
    assert report.version == "v1" and report.steps == 2 and report.tokens > 0
    entry = Registry(tmp_path / "kb" / "adapters").get("v1")
    assert entry.info.report["processes"] == 2 and entry.info.training["distributed"] == "fsdp"
    assert (entry.path / "adapter_model.safetensors").is_file()


def test_unknown_distributed_strategy_fails_before_any_work(settings, tmp_path):
    settings.training.distributed = "zero3"
    with pytest.raises(TrainingError, match="training.distributed must be one of ddp, fsdp"):
        run_training(settings, TrainOptions(gpus=2, progress=False), kb=FakeKB(tmp_path / "kb"), log=lambda m: None)


@pytest.mark.parametrize("strip", [True, False])
def test_training_strip_heading_reaches_the_answer_writer(settings, tmp_path, monkeypatch, strip):
    import slm.training.questions as questions

    seen = []
    real = questions.generate_examples

    def spy(chunks, teacher, *, policy, **kwargs):
        seen.append(policy.strip_heading)
        return real(chunks, teacher, policy=policy, **kwargs)

    monkeypatch.setattr(questions, "generate_examples", spy)
    settings.training.strip_heading = strip
    run_training(settings, TrainOptions(prepare_only=True, progress=False), kb=FakeKB(tmp_path / "kb"),
                 log=lambda m: None)
    assert seen == [strip]  # what the answer writer does with it: test_rule_questions.py


def test_self_teaching_base_is_also_the_distilling_student(settings, tmp_path):
    # step 3 loads the base to write the questions; steps 5-6 train that same model and distil from it
    settings.training.teacher = "base"
    settings.training.kd_weight = 0.5
    settings.training.max_chunks = 2
    report = run_training(settings, TrainOptions(max_steps=1, progress=False), kb=FakeKB(tmp_path / "kb"),
                          log=lambda m: None)
    assert report.version == "v1" and report.steps == 1
    assert "token-level KD on: self-distillation, weight 0.5" in report.notes, report.notes
    info = Registry(tmp_path / "kb" / "adapters").get("v1").info
    assert info.teacher == settings.training.base and info.training["kd_weight"] == 0.5


@pytest.mark.parametrize("weight", [-0.1, 1.5])
def test_kd_weight_outside_0_to_1_fails_before_any_work(settings, tmp_path, weight):
    settings.training.kd_weight = weight
    with pytest.raises(TrainingError, match="between 0 and 1"):
        run_training(settings, TrainOptions(max_steps=1, progress=False), kb=FakeKB(tmp_path / "kb"),
                     log=lambda m: None)
    assert not (tmp_path / "kb" / "training").exists()  # no run folder, no questions written
